"""Fault injection on the model path (issue 9, point 5): docvl's engine and OpenAI backend (the
official SDK) against an OpenAI-compatible fake server started on 127.0.0.1 by the test.

Each document's only page names the fault its requests meet (``FAULT-<name>``; a ``-`` never
occurs in base64, so image data cannot trigger one). Behind the faults, good replies come from
:class:`~docvl.pipeline.dev.double.TextLayerModel` (a literal reader of the page's text layer)
through the devserver's wire format (:mod:`docvl.pipeline.dev.openai_api`). Every document either
recovers or ends with a typed failure that keeps the raw reply; the others complete; the time is
bounded.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pymupdf
import pytest

from docvl.pipeline.dev.double import TextLayerModel
from docvl.pipeline.dev.openai_api import completion, parse_request
from docvl.pipeline.engine import Engine, WindowResult
from docvl.pipeline.errors import BackendTimeout
from docvl.pipeline.model.base import Generation, GenerationRequest
from docvl.pipeline.model.openai_backend import OpenAIBackend
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.policy import retried_in_run
from docvl.pipeline.result import ResultEnvelope
from docvl.pipeline.settings import Settings

NOT_JSON = "Sure! Here is the summary you asked for: {title: Quarterly"
OFF_SCHEMA = '{"title": 5, "summary": ["not", "a", "string"]}'
REPEATING = "the " * 400
#: Transient faults: how many requests meet the fault before the server answers well.
TRANSIENT = {"e500": 2, "e429": 1, "reset": 2}


class FaultServer:
    """A real HTTP server on 127.0.0.1 speaking the chat-completions API, with faults by document.

    ``die_after``: after that many good answers the server stops listening (a server that dies
    mid-batch); later requests meet a refused connection.
    """

    def __init__(
        self,
        *,
        slow_s: float = 3.0,
        die_after: int | None = None,
        counter: TokenCounter | None = None,
    ) -> None:
        self.model = TextLayerModel(counter)
        self.seen: Counter[str] = Counter()
        self.good = 0
        self.slow_s = slow_s
        self.die_after = die_after
        self.dead = False
        self.lock = threading.Lock()
        self.connections: list[socket.socket] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with outer.lock:
                    outer.connections.append(self.connection)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.answer(self, body)

            def finish(self) -> None:  # a reset connection has nothing left to flush
                with contextlib.suppress(OSError):
                    super().finish()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @staticmethod
    def fault_of(body: dict[str, Any]) -> str:
        for message in body["messages"]:
            content = message["content"]
            texts = [content] if isinstance(content, str) else [
                c.get("text", "") for c in content if c.get("type") == "text"
            ]  # fmt: skip
            for text in texts:
                if "FAULT-" in text:
                    return text.split("FAULT-", 1)[1].split()[0]
        return "none"

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if self.dead:  # a kept-alive connection to a dead server: dropped
            return self.reset(handler, partial=False)
        fault = self.fault_of(body)
        with self.lock:
            self.seen[fault] += 1
            nth = self.seen[fault]
        if nth <= TRANSIENT.get(fault, 0):
            if fault == "e500":
                return self.send(handler, 500, {"error": {"message": "upstream crashed"}})
            if fault == "e429":
                return self.send(
                    handler, 429, {"error": {"message": "slow down"}}, {"Retry-After": "1"}
                )
            return self.reset(handler)
        if fault == "slow":
            time.sleep(self.slow_s)
        if fault == "html502":  # a proxy's error page, every time
            return self.send_html(
                handler, 502, "<html><body><h1>502 Bad Gateway</h1></body></html>"
            )
        content, request, _ = parse_request(body)
        if fault in ("badjson", "schema", "repeat"):
            text = {"badjson": NOT_JSON, "schema": OFF_SCHEMA, "repeat": REPEATING}[fault]
            length = fault == "repeat"
            gen = Generation(
                text=text,
                finish_reason="length" if length else "stop",
                input_tokens=100,
                output_tokens=request.max_new_tokens if length else 20,
            )
        else:
            try:
                [gen] = self.model.generate(content, [request])
            except ValueError as exc:  # not a docvl task prompt
                return self.send(handler, 400, {"error": {"message": str(exc)}})
        reply = completion("double", [gen], body)
        if fault == "gateway":  # a gateway that drops content reports what it sent on
            reply["usage"]["prompt_tokens"] = 10
        self.send(handler, 200, reply)
        with self.lock:
            self.good += 1
            if self.die_after is not None and self.good >= self.die_after:
                self.dead = True
                threading.Thread(target=self.stop, daemon=True).start()

    @staticmethod
    def send(
        handler: BaseHTTPRequestHandler,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        # the client may have given up (timed out) first
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(data)

    @staticmethod
    def send_html(handler: BaseHTTPRequestHandler, status: int, page: str) -> None:
        data = page.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def reset(handler: BaseHTTPRequestHandler, partial: bool = True) -> None:
        """Headers and part of the body (``partial``), then a TCP reset (SO_LINGER 0)."""
        if partial:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", "4000")
            handler.end_headers()
            handler.wfile.write(b'{"id": "chatcmpl-1", "choices": [{"index": 0, "mess')
            handler.wfile.flush()
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
        handler.close_connection = True

    def stop(self) -> None:
        """Stop listening and drop every open connection (kept-alive ones too)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture()
def fault_server() -> Iterator[type[FaultServer]]:
    servers: list[FaultServer] = []

    class Tracked(FaultServer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            servers.append(self)

    yield Tracked
    for server in servers:
        if server.thread.is_alive():
            server.stop()


def make_doc(folder: Path, name: str) -> Path:
    path = folder / f"{name}.pdf"
    doc = pymupdf.open()
    page = doc.new_page(width=300, height=200)
    page.insert_text((20, 40), f"Quarterly report FAULT-{name} end")
    page.insert_text((20, 70), "Revenue grew 12% to 4.2 million EUR.")
    doc.save(path)
    doc.close()
    return path


def settings_for(server: FaultServer, tmp_path: Path) -> Settings:
    return Settings(
        backend="openai",
        base_url=server.url,
        model="double",
        tasks=("summary",),
        dpi=72,
        request_timeout_s=1.0,
        request_deadline_s=3.0,
        max_retries=2,
        cache_dir=tmp_path / "cache",
    )


def run(
    settings: Settings, paths: list[Path], counter: TokenCounter | None = None
) -> tuple[list[ResultEnvelope], list[WindowResult]]:
    """The engine's stages in order, keeping the window results (they hold the raw replies)."""
    backend = OpenAIBackend(settings)
    engine = Engine(settings, backend, counter or TokenCounter())
    envelopes: list[ResultEnvelope] = []
    windows: list[WindowResult] = []
    try:
        units, _ = engine.units(paths)
        for unit in units:
            prepared = engine.prepare(unit)
            try:
                results = [engine.run_window(prepared, job) for job in prepared.jobs]
                windows.extend(results)
                envelopes.extend(engine.finish(prepared, results))
            finally:
                prepared.close()
    finally:
        backend.close()
    return envelopes, windows


def raw_replies(windows: list[WindowResult]) -> list[str]:
    """The raw replies kept by the failed tasks."""
    return [t.raw or "" for w in windows for t in w.tasks if t.error is not None and t.raw]


@pytest.mark.slow
def test_every_fault_recovers_or_ends_typed_and_the_rest_completes(
    fault_server: type[FaultServer], tmp_path: Path
) -> None:
    server = fault_server()
    names = ["ok", "e500", "e429", "reset", "badjson", "schema", "repeat", "slow", "html502", "ok2"]
    paths = [make_doc(tmp_path, name) for name in names]
    start = time.monotonic()
    envelopes, windows = run(settings_for(server, tmp_path), paths)
    elapsed = time.monotonic() - start

    by_name = {Path(e.source.path).stem: e for e in envelopes}
    assert sorted(by_name) == sorted(names)  # one record per document
    for name in ("ok", "ok2", "e500", "e429", "reset"):  # transient faults recover
        assert by_name[name].status == "ok", (name, by_name[name].errors)
        assert by_name[name].summary is not None
    for name in TRANSIENT:  # ... after retries the SDK made
        assert server.seen[name] > TRANSIENT[name]
    codes = {n: {e.code for e in by_name[n].errors} for n in ("badjson", "schema", "repeat")}
    assert codes["badjson"] == {"validation_failed"} == codes["schema"]
    assert codes["repeat"] & {"reply_too_long", "output_too_large"}
    for name in ("badjson", "schema", "repeat"):
        assert by_name[name].status == "failed"
    kept = raw_replies(windows)
    assert NOT_JSON in kept and OFF_SCHEMA in kept and REPEATING in kept

    proxy = by_name["html502"]  # retried, then a typed failure with the page's text
    assert proxy.status == "failed" and [e.code for e in proxy.errors] == ["backend_error"]
    assert "HTTP 502" in proxy.errors[0].message and "Bad Gateway" in proxy.errors[0].message
    assert server.seen["html502"] == 3  # max_retries=2

    slow = by_name["slow"]
    assert slow.status == "failed" and [e.code for e in slow.errors] == [BackendTimeout.code]
    assert not retried_in_run(BackendTimeout.code)
    # bounded: the hung document costs its deadline (3 s) plus at most one backoff (8 s)
    assert elapsed < 60, elapsed


@pytest.mark.slow
def test_server_dying_mid_batch_keeps_the_finished_documents(
    fault_server: type[FaultServer], tmp_path: Path
) -> None:
    server = fault_server(die_after=2)
    names = ["a", "b", "c", "d"]
    paths = [make_doc(tmp_path, name) for name in names]
    start = time.monotonic()
    envelopes, _ = run(settings_for(server, tmp_path), paths)
    statuses = {Path(e.source.path).stem: (e.status, [x.code for x in e.errors]) for e in envelopes}
    assert statuses["a"] == ("ok", []) and statuses["b"] == ("ok", [])
    assert statuses["c"] == statuses["d"] == ("failed", ["backend_unavailable"])
    assert all("cannot reach" in e.errors[0].message for e in envelopes[2:])
    assert time.monotonic() - start < 60


def test_a_hung_server_costs_one_deadline(fault_server: type[FaultServer], tmp_path: Path) -> None:
    """``request_deadline_s`` bounds a request with all its retries, whatever the per-attempt
    timeout and the retry count (here 10 retries of 2 s attempts against a 30 s hang)."""
    server = fault_server(slow_s=30)
    settings = settings_for(server, tmp_path).model_copy(
        update={"request_timeout_s": 2.0, "max_retries": 10, "request_deadline_s": 2.5}
    )
    backend = OpenAIBackend(settings)
    request = GenerationRequest("Summarize FAULT-slow now.", max_new_tokens=16)
    start = time.monotonic()
    with pytest.raises(BackendTimeout, match=r"request_deadline_s=2\.5 s"):
        backend.generate([], [request])
    took = time.monotonic() - start
    backend.close()
    assert 2.0 <= took < 2.5 + 8.0 + 1.0, took
    assert server.seen["slow"] <= 3  # not 11 attempts


@pytest.mark.slow
def test_prompt_tokens_far_from_the_plan_warn(
    fault_server: type[FaultServer], tmp_path: Path
) -> None:
    """With an exact plan, a server reporting other prompt tokens than planned (here 10 for a
    page and its text) puts a warning on the record; a faithful one does not."""
    from docvl.pipeline.dev.tiny import build_tokenizer

    counter = TokenCounter(build_tokenizer())
    server = fault_server(counter=counter)
    paths = [make_doc(tmp_path, "faithful"), make_doc(tmp_path, "gateway")]
    envelopes, _ = run(settings_for(server, tmp_path), paths, counter)
    faithful, gateway = envelopes
    assert faithful.status == gateway.status == "ok"
    assert faithful.usage.input_tokens == faithful.plan.input_tokens
    assert faithful.warnings == []
    planned = gateway.plan.input_tokens
    assert gateway.warnings == [
        f"pages 1-1: the server counted 10 prompt tokens where the plan counted {planned}; "
        "a gateway may have changed or dropped content"
    ]
