"""A real OpenAI-compatible HTTP server over any :class:`ModelBackend` (``docvl dev serve``).

``POST /v1/chat/completions`` and ``GET /v1/models`` on a stdlib threading HTTP server. Messages are
mapped back to prompt parts exactly as :func:`pipeline.model.openai_backend.chat_messages` built
them: each text item of the first user message becomes a :class:`TextPart`, each ``image_url`` data
URL an :class:`ImagePart`, the LAST text item is the instruction, and later assistant/user pairs are
re-ask turns. The backend therefore renders the very same prompt as in-process, so
``usage.prompt_tokens`` equals the local exact count (PNG images: same pixels too).
``response_format: json_schema`` goes to the backend's constrained decoding.

For development and tests only: no authentication, binds to 127.0.0.1 by default.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipeline.errors import BackendError, BackendUnavailable, DocvlError
from pipeline.model.base import GenerationRequest, ModelBackend
from pipeline.model.transformers_backend import TransformersBackend
from pipeline.plan.prompt import SYSTEM_PROMPT, ImagePart, Part, TextPart, Turn

log = logging.getLogger(__name__)
DEFAULT_MAX_TOKENS = 1024


class BadRequest(ValueError):
    pass


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(c, dict) and c.get("type") == "text" for c in content
    ):
        return "".join(str(c.get("text", "")) for c in content)
    raise BadRequest("expected text content")


def _image(url: str, index: int) -> ImagePart:
    from PIL import Image

    if not url.startswith("data:image/") or ";base64," not in url:
        raise BadRequest("only data:image/...;base64 URLs are supported")
    try:
        image = Image.open(io.BytesIO(base64.b64decode(url.split(";base64,", 1)[1])))
        image.load()
    except Exception as exc:
        raise BadRequest(f"image {index + 1}: cannot decode: {exc}") from exc
    return ImagePart(doc=0, page=index + 1, height=image.height, width=image.width, image=image)


def parse_messages(messages: Any) -> tuple[list[Part], str, tuple[Turn, ...]]:
    """(content, instruction, turns) from chat messages in docvl's layout."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    rest = list(messages)
    if rest[0].get("role") == "system" and _text_of(rest.pop(0).get("content")) != SYSTEM_PROMPT:
        raise BadRequest("the devserver serves docvl's own system prompt only")
    if not rest or rest[0].get("role") != "user":
        raise BadRequest("expected a user message after the system prompt")
    items = rest.pop(0).get("content")
    if isinstance(items, str):
        items = [{"type": "text", "text": items}]
    if not isinstance(items, list) or not items or items[-1].get("type") != "text":
        raise BadRequest("the user message must end with the instruction as a text part")
    content: list[Part] = []
    for item in items[:-1]:
        if item.get("type") == "text":
            content.append(TextPart(str(item.get("text", ""))))
        elif item.get("type") == "image_url":
            url = item.get("image_url")
            url = url.get("url", "") if isinstance(url, dict) else str(url)
            content.append(_image(url, sum(isinstance(p, ImagePart) for p in content)))
        else:
            raise BadRequest(f"unsupported content type {item.get('type')!r}")
    instruction = str(items[-1].get("text", ""))
    if len(rest) % 2:
        raise BadRequest("after the first user message, expected assistant/user pairs")
    turns = []
    for reply, feedback in zip(rest[::2], rest[1::2], strict=True):
        if reply.get("role") != "assistant" or feedback.get("role") != "user":
            raise BadRequest("after the first user message, expected assistant/user pairs")
        turns.append(
            Turn(reply=_text_of(reply.get("content")), feedback=_text_of(feedback.get("content")))
        )
    return content, instruction, tuple(turns)


def parse_request(body: Any) -> tuple[list[Part], GenerationRequest]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    content, instruction, turns = parse_messages(body.get("messages"))
    schema = None
    fmt = body.get("response_format") or {"type": "text"}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise BadRequest("response_format.json_schema.schema must be an object")
    elif fmt.get("type") == "json_object":
        schema = {"type": "object"}
    elif fmt.get("type") != "text":
        raise BadRequest(f"unsupported response_format type {fmt.get('type')!r}")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    temperature = body.get("temperature")
    request = GenerationRequest(
        instruction=instruction,
        json_schema=schema,
        max_new_tokens=int(max_tokens),
        temperature=1.0 if temperature is None else float(temperature),
        turns=turns,
    )
    return content, request


def _handler(backend: ModelBackend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("devserver: " + format, *args)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str) -> None:
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": [
                            {
                                "id": backend.model_id,
                                "object": "model",
                                "created": 0,
                                "owned_by": "docvl",
                            }
                        ],
                    },
                )
            else:
                self._error(404, f"no route {self.path}", "not_found")

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._error(404, f"no route {self.path}", "not_found")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                content, request = parse_request(json.loads(self.rfile.read(length) or b"null"))
                generation = backend.generate(content, [request])[0]
            except (BadRequest, json.JSONDecodeError) as exc:
                self._error(400, str(exc), "invalid_request_error")
                return
            except (BackendError, BackendUnavailable) as exc:
                self._error(503, exc.message, exc.code)
                return
            except DocvlError as exc:
                self._error(400, exc.message, exc.code)
                return
            except Exception as exc:  # a dev server reports everything rather than hanging up
                log.exception("devserver: generation failed")
                self._error(500, f"{type(exc).__name__}: {exc}", "server_error")
                return
            self._send(
                200,
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": backend.model_id,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": generation.text},
                            "finish_reason": generation.finish_reason,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": generation.input_tokens,
                        "completion_tokens": generation.output_tokens,
                        "total_tokens": generation.input_tokens + generation.output_tokens,
                        "prompt_tokens_details": {"cached_tokens": generation.cached_tokens},
                    },
                },
            )

    return Handler


@dataclass
class ServerHandle:
    server: ThreadingHTTPServer
    thread: threading.Thread
    url: str  # API root including /v1: pass as base_url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def serve(backend: ModelBackend, host: str = "127.0.0.1", port: int = 0) -> ServerHandle:
    """Start serving ``backend`` in a daemon thread; port 0 picks a free port (see
    ``handle.url``)."""
    server = ThreadingHTTPServer((host, port), _handler(backend))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="docvl-devserver", daemon=True)
    thread.start()
    return ServerHandle(server, thread, f"http://{host}:{server.server_address[1]}/v1")


def main(model: str, host: str = "127.0.0.1", port: int = 8000, device: str | None = None) -> int:
    """``docvl dev serve``: serve a local Qwen3-VL checkpoint until Ctrl-C."""

    logging.basicConfig(level=logging.INFO)
    backend = TransformersBackend(model, device=device)
    handle = serve(backend, host, port)
    print(f"serving {model} at {handle.url} (Ctrl-C to stop)", flush=True)
    try:
        handle.thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
        backend.close()
    return 0
