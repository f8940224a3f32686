"""OpenAI-compatible chat completions through the official ``openai`` SDK (vLLM, SGLang,
OpenRouter, docvl's devserver, ...).

Messages mirror :func:`docvl.pipeline.plan.prompt.hf_messages`: system prompt, then ONE user message
with the page content first (text parts and images as ``data:`` URLs, in order) and the instruction
as its LAST text part, then the re-ask turns as assistant/user messages. Keeping the content first
lets server prefix caching share it between the tasks on one document. ``base_url`` is the API root
including ``/v1`` (``http://localhost:8000/v1``, ``https://openrouter.ai/api/v1``); nothing is sent
anywhere without it.

Structured output: ``response_format`` carries the request's schema as is (by default the user's
schema, unbounded: see :mod:`docvl.pipeline.tasks.specs`) plus only what every reply needs: no free
whitespace, as ``x-guidance: {"whitespace_flexible": false}`` in the schema
(:func:`~docvl.pipeline.model.constrain.with_grammar_options`; vLLM's ``guidance`` backend honours
it; with its ``xgrammar`` backend start the server with ``disable_any_whitespace`` in
``--structured-outputs-config``, since whitespace loops are a known failure with Qwen models), and
the total output budget as ``max_tokens``.

The body holds only OpenAI API fields, plus ``top_k`` when ``Settings.sampling_extras``
allows it and whatever the user put in ``Settings.extra_body``. Retries, Retry-After, timeouts
and typed errors are the SDK's (``max_retries``, per-attempt ``request_timeout_s``);
:mod:`docvl.pipeline.model.http` cuts every attempt to ``request_deadline_s`` in all. SDK errors map
onto docvl's hierarchy (:func:`docvl_error`): timeouts -> BackendTimeout, 401/403/404 and an
unreachable host -> BackendUnavailable, other 4xx -> BackendRejected with the server's
message, 429/5xx and broken connections -> BackendError.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx2
import openai

from docvl.pipeline.errors import (
    BackendError,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    DocvlError,
    UsageError,
)
from docvl.pipeline.model.base import FinishReason, Generation, GenerationRequest, pieces_from_bytes
from docvl.pipeline.model.constrain import with_grammar_options
from docvl.pipeline.model.http import (
    DeadlineExceeded,
    DeadlineTransport,
    deadline_headers,
    env_proxy,
)
from docvl.pipeline.plan.prompt import SYSTEM_PROMPT, ImagePart, Part, TextPart
from docvl.pipeline.settings import Settings

log = logging.getLogger(__name__)

ImageFormat = Literal["png", "jpeg"]
#: Qwen3-VL's recommended nucleus sampling (model card), sent with sampled requests.
TOP_P, TOP_K = 0.8, 20
#: The SDK's connect timeout: an unreachable host fails fast (each attempt), a hung one does not.
CONNECT_TIMEOUT_S = 10.0


def image_data_url(image: Any, fmt: ImageFormat = "png", quality: int = 90) -> str:
    """A PIL image as a ``data:`` URL (PNG is lossless: the server sees the same pixels)."""
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(buf, format="JPEG", quality=quality)
    else:
        image.save(buf, format="PNG")
    return f"data:image/{fmt};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def chat_messages(
    content: Sequence[Part], request: GenerationRequest, fmt: ImageFormat = "png"
) -> list[dict[str, Any]]:
    user: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            user.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            if part.image is None:
                raise UsageError(f"page {part.page} of document {part.doc} has no rendered image")
            user.append(
                {"type": "image_url", "image_url": {"url": image_data_url(part.image, fmt)}}
            )
    user.append({"type": "text", "text": request.instruction})
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user},
    ]
    for turn in request.turns:
        messages.append({"role": "assistant", "content": turn.reply})
        messages.append({"role": "user", "content": turn.feedback})
    return messages


def _schema_name(schema: dict[str, Any]) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "docvl_reply"))[:64]
    return name or "docvl_reply"


def server_message(error: openai.APIStatusError) -> str:
    """The server's own words from an error answer (``{"error": {"message": ...}}`` or text)."""
    try:
        body = error.response.json()
        inner = body.get("error", body) if isinstance(body, dict) else body
        message = inner.get("message", inner) if isinstance(inner, dict) else inner
        return str(message)[:500]
    except ValueError:
        return error.response.text[:500]


def _rejects(error: openai.APIStatusError, word: str) -> bool:
    return error.status_code in (400, 422) and word in server_message(error).lower()


def docvl_error(error: openai.OpenAIError, url: str, deadline_s: float) -> DocvlError:
    """The docvl error for an SDK error raised after the SDK's own retries."""
    if isinstance(error, DeadlineExceeded):
        return BackendTimeout(f"{url}: no answer within request_deadline_s={deadline_s:g} s")
    if isinstance(error, openai.APITimeoutError):
        return BackendTimeout(f"{url}: timed out (every attempt, retries included)")
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__
        if isinstance(cause, httpx2.ConnectError):
            return BackendUnavailable(f"cannot reach {url}: {cause}")
        return BackendError(f"request to {url} failed: {cause!r}")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        message = f"{url}: HTTP {status}: {server_message(error)}"
        if status in (401, 403, 404):
            return BackendUnavailable(message)
        if status in (408, 409, 429) or status >= 500:
            return BackendError(message)
        return BackendRejected(message)  # a bad request stays bad (a prompt over the context)
    return BackendError(f"{url}: {type(error).__name__}: {error}")


def _token_logprobs(logprobs: Any) -> tuple[tuple[str, float], ...]:
    """``choices[0].logprobs.content[*]`` as token pieces (from ``bytes`` when every token has
    them, so characters split over tokens come out whole) and log-probabilities; ``()`` when
    absent or malformed."""
    try:
        content = getattr(logprobs, "content", None)
        if not content:
            return ()
        values = [float(t.logprob) for t in content]
        if all(isinstance(getattr(t, "bytes", None), list) for t in content):
            return pieces_from_bytes(
                [(bytes(t.bytes), v) for t, v in zip(content, values, strict=True)]
            )
        return tuple((str(t.token), v) for t, v in zip(content, values, strict=True))
    except (TypeError, ValueError, AttributeError):
        return ()


class OpenAIBackend:
    name = "openai"

    def __init__(self, settings: Settings, *, image_format: ImageFormat = "png") -> None:
        if not settings.base_url:
            raise UsageError("the openai backend needs --base-url (e.g. http://localhost:8000/v1)")
        self.settings = settings
        self.model_id = settings.model
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        self.image_format: ImageFormat = image_format
        api_key = os.environ.get(settings.api_key_env)
        #: The SDK insists on a key; a keyless local server (vLLM, the devserver) ignores this one.
        self._key_hint = "" if api_key else f" (no API key: ${settings.api_key_env} is not set)"
        transport = httpx2.HTTPTransport(proxy=env_proxy(settings.base_url))
        self._http = httpx2.Client(transport=DeadlineTransport(transport))
        self.client = openai.OpenAI(
            api_key=api_key or "no-key",
            base_url=settings.base_url,
            timeout=httpx2.Timeout(settings.request_timeout_s, connect=CONNECT_TIMEOUT_S),
            max_retries=settings.max_retries,
            http_client=self._http,
        )
        self._semaphore = threading.Semaphore(settings.max_concurrency)
        #: None until known; False after the server rejected ``response_format`` once.
        self.structured_output: bool | None = None
        #: False after the server rejected ``logprobs`` once (then never sent again).
        self.logprobs: bool | None = None
        self.retries = 0  # SDK retries behind the answers so far (for tests and stats)
        self._stats_lock = threading.Lock()

    def payload(
        self, content: Sequence[Part], request: GenerationRequest, structured: bool
    ) -> dict[str, Any]:
        """The request body's OpenAI fields (``extra_body`` holds the rest: :meth:`extra`)."""
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": chat_messages(content, request, self.image_format),
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
        }
        if request.temperature > 0:
            body["top_p"] = TOP_P
        if structured and request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": _schema_name(request.json_schema),
                    "schema": with_grammar_options(request.json_schema),
                    "strict": True,
                },
            }
        if self.logprobs is not False:
            body["logprobs"] = True  # per-token log-probabilities: docvl.pipeline.tasks.confidence
        return body

    def extra(self, request: GenerationRequest) -> dict[str, Any]:
        """Fields outside the OpenAI API: only those the user allowed."""
        fields: dict[str, Any] = {}
        if self.settings.sampling_extras and request.temperature > 0:
            fields["top_k"] = TOP_K
        return fields | self.settings.extra_body_fields()

    def generate(
        self, content: Sequence[Part], requests: Sequence[GenerationRequest]
    ) -> list[Generation]:
        if len(requests) <= 1:
            return [self._one(content, r) for r in requests]
        with ThreadPoolExecutor(
            max_workers=min(len(requests), self.settings.max_concurrency)
        ) as pool:
            return list(pool.map(lambda r: self._one(content, r), requests))

    def _one(self, content: Sequence[Part], request: GenerationRequest) -> Generation:
        structured = request.json_schema is not None and self.structured_output is not False
        start = time.perf_counter()
        try:
            try:
                raw = self._ask(content, request, structured)
            except openai.APIStatusError as exc:
                if not (structured and exc.status_code == 400):
                    raise
                log.warning(
                    "server rejected response_format (%s); falling back to plain prompting",
                    server_message(exc),
                )
                raw = self._ask(content, request, False)
                self.structured_output = False
            else:
                if structured:
                    self.structured_output = True
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        return self._generation(raw, time.perf_counter() - start)

    def _error(self, exc: openai.OpenAIError) -> DocvlError:
        error = docvl_error(exc, self.url, self.settings.request_deadline_s)
        if isinstance(exc, openai.AuthenticationError) and self._key_hint:
            error.message += self._key_hint
            error.args = (error.message,)
        return error

    def _ask(self, content: Sequence[Part], request: GenerationRequest, structured: bool) -> Any:
        """One request through the SDK (retried there); a server that rejects ``logprobs`` is
        asked once more without them."""
        try:
            return self._create(self.payload(content, request, structured), request)
        except openai.APIStatusError as exc:
            if self.logprobs is False or not _rejects(exc, "logprob"):
                raise
            log.warning("server rejected logprobs (%s); asking without", server_message(exc))
            self.logprobs = False
            return self._create(self.payload(content, request, structured), request)

    def _create(self, body: dict[str, Any], request: GenerationRequest) -> Any:
        with self._semaphore:
            raw = self.client.chat.completions.with_raw_response.create(
                **body,
                extra_body=self.extra(request) or None,
                extra_headers=deadline_headers(self.settings.request_deadline_s),
            )
        with self._stats_lock:
            self.retries += raw.retries_taken
        return raw

    def _generation(self, raw: Any, elapsed: float) -> Generation:
        try:
            completion = raw.parse()
            choice = completion.choices[0]
            text = choice.message.content or ""
        except (openai.OpenAIError, ValueError, AttributeError, IndexError, TypeError) as exc:
            text = raw.http_response.text[:300]
            raise BackendError(f"{self.url}: malformed response: {text}") from exc
        finish: FinishReason = "length" if choice.finish_reason == "length" else "stop"
        usage = completion.usage
        details = getattr(usage, "prompt_tokens_details", None)
        return Generation(
            text=text,
            finish_reason=finish,
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cached_tokens=int(getattr(details, "cached_tokens", 0) or 0),
            timings={"request_s": elapsed, "retries": float(raw.retries_taken)},
            token_logprobs=_token_logprobs(choice.logprobs),
        )

    def close(self) -> None:
        self.client.close()
        self._http.close()
