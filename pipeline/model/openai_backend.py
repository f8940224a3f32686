"""OpenAI-compatible chat completions over HTTP (vLLM, SGLang, OpenRouter, docvl's devserver, ...).

Messages mirror :func:`pipeline.plan.prompt.hf_messages`: system prompt, then ONE user message with
the page content first (text parts and images as ``data:`` URLs, in order) and the instruction as
its LAST text part, then the re-ask turns as assistant/user messages. Keeping the content first lets
server prefix caching share it between the tasks on one document. ``base_url`` is the API root
including ``/v1`` (``http://localhost:8000/v1``, ``https://openrouter.ai/api/v1``); nothing is sent
anywhere without it.

Structured output: ``response_format`` carries the request's schema as is (by default the user's
schema, unbounded: see :mod:`pipeline.tasks.specs`) plus only what every reply needs: no free
whitespace, as ``x-guidance: {"whitespace_flexible": false}`` in the schema
(:func:`~pipeline.model.constrain.with_grammar_options`; vLLM's ``guidance`` backend honours it;
with its ``xgrammar`` backend start the server with ``disable_any_whitespace`` in
``--structured-outputs-config``, since whitespace loops are a known failure with Qwen models), and
the total output budget as ``max_tokens``.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx

from pipeline.errors import BackendError, BackendRejected, BackendUnavailable, UsageError
from pipeline.model.base import FinishReason, Generation, GenerationRequest, pieces_from_bytes
from pipeline.model.constrain import with_grammar_options
from pipeline.model.http import retry_after_s
from pipeline.plan.prompt import SYSTEM_PROMPT, ImagePart, Part, TextPart
from pipeline.settings import Settings

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504, 520, 522, 524})
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
#: Longest Retry-After honoured; a server asking for more is treated as unavailable for now.
MAX_RETRY_AFTER_S = 300.0
ImageFormat = Literal["png", "jpeg"]


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


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error", body) if isinstance(body, dict) else body
        message = error.get("message", error) if isinstance(error, dict) else error
        return str(message)[:500]
    except ValueError:
        return response.text[:500]


def _rejects_logprobs(response: httpx.Response) -> bool:
    return response.status_code in (400, 422) and "logprob" in _server_message(response).lower()


def _token_logprobs(logprobs: Any) -> tuple[tuple[str, float], ...]:
    """``choices[0].logprobs.content[*]`` as token pieces (from ``bytes`` when every token has
    them, so characters split over tokens come out whole) and log-probabilities; ``()`` when
    absent or malformed."""
    try:
        content = logprobs["content"] if isinstance(logprobs, dict) else None
        if not content:
            return ()
        values = [float(t["logprob"]) for t in content]
        if all(isinstance(t.get("bytes"), list) for t in content):
            return pieces_from_bytes(
                [(bytes(t["bytes"]), v) for t, v in zip(content, values, strict=True)]
            )
        return tuple((str(t["token"]), v) for t, v in zip(content, values, strict=True))
    except (KeyError, TypeError, ValueError, AttributeError):
        return ()


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        settings: Settings,
        *,
        client: httpx.Client | None = None,
        image_format: ImageFormat = "png",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not settings.base_url:
            raise UsageError("the openai backend needs --base-url (e.g. http://localhost:8000/v1)")
        self.settings = settings
        self.model_id = settings.model
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        self.image_format: ImageFormat = image_format
        self._sleep = sleep
        headers = {"Content-Type": "application/json"}
        api_key = os.environ.get(settings.api_key_env)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = client or httpx.Client(timeout=settings.request_timeout_s, headers=headers)
        self._semaphore = threading.Semaphore(settings.max_concurrency)
        #: None until known; False after the server rejected ``response_format`` once.
        self.structured_output: bool | None = None
        #: False after the server rejected ``logprobs`` once (then never sent again).
        self.logprobs: bool | None = None
        self.retries = 0  # total retries so far (for tests and stats)
        self.delays: list[float] = []  # every backoff slept, in order
        self._stats_lock = threading.Lock()

    def payload(
        self, content: Sequence[Part], request: GenerationRequest, structured: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": chat_messages(content, request, self.image_format),
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
        }
        if request.temperature > 0:
            body["top_p"] = 0.8
            body["top_k"] = 20
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
            body["logprobs"] = True  # per-token log-probabilities: pipeline.tasks.confidence
        return body

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
        response, retries = self._post(self.payload(content, request, structured))
        if self.logprobs is not False and _rejects_logprobs(response):
            log.warning("server rejected logprobs (%s); asking without", _server_message(response))
            self.logprobs = False
            response, more = self._post(self.payload(content, request, structured))
            retries += more
        if response.status_code == 400 and structured:
            log.warning(
                "server rejected response_format (%s); falling back to plain prompting",
                _server_message(response),
            )
            response, more = self._post(self.payload(content, request, False))
            retries += more
            if response.status_code < 400:
                self.structured_output = False
        elif structured and response.status_code < 400:
            self.structured_output = True
        self._raise_for_status(response)
        return self._generation(response, time.perf_counter() - start, retries)

    def _post(self, body: dict[str, Any]) -> tuple[httpx.Response, int]:
        """POST with retries on 429/5xx/transport errors: the final response (any status) and the
        retries."""
        attempt = 0
        while True:
            try:
                with self._semaphore:
                    response = self._client.post(self.url, json=body)
            except httpx.TransportError as exc:
                if attempt >= self.settings.max_retries:
                    if isinstance(exc, httpx.ConnectError):
                        raise BackendUnavailable(f"cannot reach {self.url}: {exc}") from exc
                    raise BackendError(f"request to {self.url} failed: {exc!r}") from exc
                delay = self._backoff(attempt, None)
                log.warning("%s: %r; retry %d in %.1fs", self.url, exc, attempt + 1, delay)
            else:
                if response.status_code not in RETRY_STATUS or attempt >= self.settings.max_retries:
                    return response, attempt
                after = retry_after_s(response.headers.get("Retry-After"))
                if after is not None and after > MAX_RETRY_AFTER_S:
                    return response, attempt
                delay = self._backoff(attempt, after)
                log.warning(
                    "%s: HTTP %d; retry %d in %.1fs",
                    self.url,
                    response.status_code,
                    attempt + 1,
                    delay,
                )
            attempt += 1
            with self._stats_lock:
                self.retries += 1
                self.delays.append(delay)
            self._sleep(delay)

    @staticmethod
    def _backoff(attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter, never shorter than the server's Retry-After."""
        ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
        delay = random.uniform(ceiling / 2, ceiling)
        return max(delay, retry_after) if retry_after is not None else delay

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        message = f"{self.url}: HTTP {status}: {_server_message(response)}"
        if status in (401, 403, 404):
            raise BackendUnavailable(message)
        if status not in RETRY_STATUS:  # a bad request stays bad (a prompt over the context)
            raise BackendRejected(message)
        raise BackendError(message)

    def _generation(self, response: httpx.Response, elapsed: float, retries: int) -> Generation:
        try:
            body = response.json()
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"{self.url}: malformed response: {response.text[:300]}") from exc
        finish: FinishReason = "length" if choice.get("finish_reason") == "length" else "stop"
        usage = body.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        return Generation(
            text=text,
            finish_reason=finish,
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
            timings={"request_s": elapsed, "retries": float(retries)},
            token_logprobs=_token_logprobs(choice.get("logprobs")),
        )

    def close(self) -> None:
        self._client.close()
