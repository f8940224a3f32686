"""The OpenAI chat-completions wire format of ``docvl dev serve``: requests to prompt parts, and
generations to completion bodies and stream chunks.

Messages are mapped back to prompt parts exactly as
:func:`docvl.pipeline.model.openai_backend.chat_messages` built them: each text item of the first
user message becomes a :class:`TextPart`, each ``image_url`` data URL an :class:`ImagePart`, the
LAST text item is the instruction, and later assistant/user pairs are re-ask turns. The backend
therefore renders the very same prompt as in-process, so ``usage.prompt_tokens`` equals the local
exact count (PNG images: same pixels too). A system prompt other than docvl's own is accepted and
given to the model as the first text of the content (the backends always render docvl's system
turn).

Fields are checked like api.openai.com does: an unknown field (``top_k``, a provider's routing
object) is a 400 ``Unrecognized request argument``, and a known one this server cannot honour
(``tools``, audio) a 400 that names it, never silently ignored.
"""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from docvl.pipeline.model.base import Generation, GenerationRequest
from docvl.pipeline.plan.prompt import SYSTEM_PROMPT, ImagePart, Part, TextPart, Turn

DEFAULT_MAX_TOKENS = 1024
MAX_N = 8
#: Request fields honoured (``top_p``, ``seed``, penalties and bookkeeping fields are accepted and
#: have no effect: the backends sample with their own settings).
HONOURED = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "response_format",
    "stream", "stream_options", "n", "stop", "logprobs", "top_logprobs",
}  # fmt: skip
ACCEPTED = {
    "top_p", "seed", "presence_penalty", "frequency_penalty", "user", "metadata", "store",
    "service_tier", "parallel_tool_calls", "reasoning_effort", "tool_choice",
}  # fmt: skip
#: OpenAI fields this server cannot honour: a 400 names them.
UNSUPPORTED = {
    "tools", "functions", "function_call", "audio", "modalities", "prediction", "logit_bias",
    "web_search_options",
}  # fmt: skip


class BadRequest(ValueError):
    """A request this server answers with HTTP 400 (``param`` names the field, when one)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(c, dict) and c.get("type") == "text" for c in content
    ):
        return "".join(str(c.get("text", "")) for c in content)
    raise BadRequest("expected text content", "messages")


def _image(url: str, index: int) -> ImagePart:
    from PIL import Image

    if not url.startswith("data:image/") or ";base64," not in url:
        raise BadRequest("only data:image/...;base64 URLs are supported", "messages")
    try:
        image = Image.open(io.BytesIO(base64.b64decode(url.split(";base64,", 1)[1])))
        image.load()
    except Exception as exc:
        raise BadRequest(f"image {index + 1}: cannot decode: {exc}", "messages") from exc
    return ImagePart(doc=0, page=index + 1, height=image.height, width=image.width, image=image)


def parse_messages(messages: Any) -> tuple[list[Part], str, tuple[Turn, ...]]:
    """(content, instruction, turns) from chat messages in docvl's layout."""
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) for m in messages)
    ):
        raise BadRequest("messages must be a non-empty list of objects", "messages")
    rest = list(messages)
    system = _text_of(rest.pop(0).get("content")) if rest[0].get("role") == "system" else None
    if not rest or rest[0].get("role") != "user":
        raise BadRequest("expected a user message after the system prompt", "messages")
    items = rest.pop(0).get("content")
    if isinstance(items, str):
        items = [{"type": "text", "text": items}]
    if not isinstance(items, list) or not items or items[-1].get("type") != "text":
        raise BadRequest(
            "the user message must end with the instruction as a text part", "messages"
        )
    content: list[Part] = []
    if system is not None and system != SYSTEM_PROMPT:
        content.append(TextPart(system))
    for item in items[:-1]:
        if item.get("type") == "text":
            content.append(TextPart(str(item.get("text", ""))))
        elif item.get("type") == "image_url":
            url = item.get("image_url")
            url = url.get("url", "") if isinstance(url, dict) else str(url)
            content.append(_image(url, sum(isinstance(p, ImagePart) for p in content)))
        else:
            raise BadRequest(f"unsupported content type {item.get('type')!r}", "messages")
    instruction = str(items[-1].get("text", ""))
    pairs = "after the first user message, expected assistant/user pairs"
    if len(rest) % 2:
        raise BadRequest(pairs, "messages")
    turns = []
    for reply, feedback in zip(rest[::2], rest[1::2], strict=True):
        if reply.get("role") != "assistant" or feedback.get("role") != "user":
            raise BadRequest(pairs, "messages")
        turns.append(
            Turn(reply=_text_of(reply.get("content")), feedback=_text_of(feedback.get("content")))
        )
    return content, instruction, tuple(turns)


def check_fields(body: dict[str, Any]) -> None:
    for name in body:
        if name in UNSUPPORTED:
            raise BadRequest(f"{name} is not supported by docvl dev serve", name)
        if name not in HONOURED | ACCEPTED:
            raise BadRequest(f"Unrecognized request argument supplied: {name}", name)
    if body.get("tool_choice") not in (None, "none"):
        raise BadRequest("tool_choice is not supported by docvl dev serve", "tool_choice")


def stops_of(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop or []
    if (
        not isinstance(stops, list)
        or len(stops) > 4
        or not all(isinstance(s, str) and s for s in stops)
    ):
        raise BadRequest("stop must be a string or a list of up to 4 non-empty strings", "stop")
    return stops


def parse_request(body: Any) -> tuple[list[Part], GenerationRequest, int]:
    """(content, request, n) from a chat-completions body; BadRequest for what is not served."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    check_fields(body)
    stops_of(body)
    content, instruction, turns = parse_messages(body.get("messages"))
    schema = None
    fmt = body.get("response_format") or {"type": "text"}
    if not isinstance(fmt, dict):
        raise BadRequest("response_format must be an object", "response_format")
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise BadRequest("response_format.json_schema.schema must be an object")
    elif fmt.get("type") == "json_object":
        schema = {"type": "object"}
    elif fmt.get("type") != "text":
        raise BadRequest(f"unsupported response_format type {fmt.get('type')!r}")
    n = body.get("n") or 1
    if not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise BadRequest(f"n must be an integer from 1 to {MAX_N}", "n")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    temperature = body.get("temperature")
    request = GenerationRequest(
        instruction=instruction,
        json_schema=schema,
        max_new_tokens=int(max_tokens),
        temperature=1.0 if temperature is None else float(temperature),
        turns=turns,
    )
    return content, request, n


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop sequence (excluded), and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _choice_logprobs(gen: Generation) -> dict[str, Any]:
    return {
        "content": [
            {"token": piece, "logprob": lp, "bytes": list(piece.encode()), "top_logprobs": []}
            for piece, lp in gen.token_logprobs
        ]
    }


def _usage(gens: Sequence[Generation]) -> dict[str, Any]:
    prompt = gens[0].input_tokens
    completion = sum(g.output_tokens for g in gens)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": gens[0].cached_tokens},
    }


def _replies(gens: Sequence[Generation], stops: Sequence[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for gen in gens:
        text, stopped = cut_at_stop(gen.text, stops)
        out.append((text, "stop" if stopped else gen.finish_reason))
    return out


def completion(model: str, gens: Sequence[Generation], body: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` body with one choice per generation."""
    choices = []
    for i, (gen, (text, finish)) in enumerate(
        zip(gens, _replies(gens, stops_of(body)), strict=True)
    ):
        choice: dict[str, Any] = {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
        }
        if body.get("logprobs") and gen.token_logprobs and not stops_of(body):
            choice["logprobs"] = _choice_logprobs(gen)
        choices.append(choice)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage(gens),
    }


def _pieces(gen: Generation, text: str) -> list[str]:
    """``text`` in the pieces a server would stream: the tokens when known, else 16 characters."""
    pieces = [p for p, _ in gen.token_logprobs if p]
    if "".join(pieces) != gen.text or text != gen.text:
        pieces = [text[i : i + 16] for i in range(0, len(text), 16)]
    return pieces


def stream_chunks(model: str, gens: Sequence[Generation], body: dict[str, Any]) -> Iterator[str]:
    """Server-sent events of ``chat.completion.chunk`` objects, then ``[DONE]``. The replies are
    generated before the first chunk (errors are then still an HTTP status), and sent in pieces."""
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(choices: list[dict[str, Any]], **more: Any) -> str:
        data = {"id": ident, "object": "chat.completion.chunk", "created": created}
        return f"data: {json.dumps(data | {'model': model, 'choices': choices} | more)}\n\n"

    for i, (gen, (text, finish)) in enumerate(
        zip(gens, _replies(gens, stops_of(body)), strict=True)
    ):
        yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}}])
        for piece in _pieces(gen, text):
            yield chunk([{"index": i, "delta": {"content": piece}, "finish_reason": None}])
        yield chunk([{"index": i, "delta": {}, "finish_reason": finish}])
    if (body.get("stream_options") or {}).get("include_usage"):
        yield chunk([], usage=_usage(gens))
    yield "data: [DONE]\n\n"
