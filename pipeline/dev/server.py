"""A real OpenAI-compatible HTTP server over any :class:`ModelBackend` (``docvl dev serve``).

FastAPI on uvicorn: ``POST /v1/chat/completions`` (``stream``, ``n``, ``stop``,
``response_format``, ``logprobs``; see :mod:`docvl.pipeline.dev.openai_api` for the wire format and
what is answered 400), ``GET /v1/models`` and ``GET /health``. ``response_format: json_schema``
goes to the backend's constrained decoding. Errors come as OpenAI error bodies
(``{"error": {"message", "type", "param", "code"}}``): 400 for a request it cannot serve, 503
when the backend cannot answer, 500 for a bug.

For development and tests only: no authentication, binds to 127.0.0.1 by default.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from docvl.pipeline.dev.openai_api import (
    BadRequest,
    completion,
    parse_request,
    stream_chunks,
)
from docvl.pipeline.errors import BackendError, BackendUnavailable, DocvlError
from docvl.pipeline.model.base import ModelBackend
from docvl.pipeline.model.transformers_backend import TransformersBackend

log = logging.getLogger(__name__)


def _error(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": status}},
        status_code=status,
    )


def create_app(backend: ModelBackend) -> FastAPI:
    """The FastAPI application serving ``backend``."""
    app = FastAPI(title="docvl dev serve", docs_url=None, redoc_url=None)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": backend.model_id}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        model = {"id": backend.model_id, "object": "model", "created": 0, "owned_by": "docvl"}
        return {"object": "list", "data": [model]}

    def answer(body: Any) -> JSONResponse | StreamingResponse:
        try:
            content, request, n = parse_request(body)
            generations = backend.generate(content, [request] * n)
        except BadRequest as exc:
            return _error(400, str(exc), "invalid_request_error", exc.param)
        except (BackendError, BackendUnavailable) as exc:
            return _error(503, exc.message, exc.code)
        except DocvlError as exc:
            return _error(400, exc.message, exc.code)
        except Exception as exc:  # a dev server reports everything rather than hanging up
            log.exception("devserver: generation failed")
            return _error(500, f"{type(exc).__name__}: {exc}", "server_error")
        if body.get("stream"):
            return StreamingResponse(
                stream_chunks(backend.model_id, generations, body), media_type="text/event-stream"
            )
        return JSONResponse(completion(backend.model_id, generations, body))

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> JSONResponse | StreamingResponse:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError as exc:
            return _error(400, f"invalid JSON body: {exc}", "invalid_request_error")
        return await run_in_threadpool(answer, body)  # generation blocks: off the event loop

    return app


@dataclass
class ServerHandle:
    server: uvicorn.Server
    thread: threading.Thread
    url: str  # API root including /v1: pass as base_url
    sock: socket.socket

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def serve(backend: ModelBackend, host: str = "127.0.0.1", port: int = 0) -> ServerHandle:
    """Start serving ``backend`` in a daemon thread; port 0 picks a free port (see
    ``handle.url``). Returns once the server accepts connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(create_app(backend), log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="docvl-devserver", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise RuntimeError("docvl dev serve did not start")
    return ServerHandle(server, thread, f"http://{host}:{sock.getsockname()[1]}/v1", sock)


def main(model: str, host: str = "127.0.0.1", port: int = 8000, device: str | None = None) -> int:
    """``docvl dev serve``: serve a local Qwen3-VL checkpoint until Ctrl-C."""

    logging.basicConfig(level=logging.INFO)
    backend = TransformersBackend(model, device=device)
    handle = serve(backend, host, port)
    print(f"serving {model} at {handle.url} (Ctrl-C to stop)", flush=True)
    try:
        while handle.thread.is_alive():
            handle.thread.join(timeout=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
        backend.close()
    return 0
