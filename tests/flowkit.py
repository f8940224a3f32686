"""Test support for the flow tests: small PDFs and a scripted backend usable in-process and in
subprocesses.

``flowkit:scripted_backend`` is passed to the flows as ``backend_factory``. Its replies cite every
page in the window (so no completeness re-ask happens). Environment knobs, read at call time so
subprocesses (``python -m docvl.flows.inbox``, batch runs) behave the same:

* ``DOCVL_TEST_CALL_LOG``: append one line per model call (``<pid> <first page> <doc name>``);
* ``DOCVL_TEST_DELAY_S``: sleep this long in each call;
* ``DOCVL_TEST_FAIL_FIRST``: raise BackendError on the first N calls of the process.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from docvl.pipeline.engine import Engine, Unit
from docvl.pipeline.engine.prepare import sha256_file
from docvl.pipeline.errors import BackendError, BackendUnavailable
from docvl.pipeline.model.base import Generation, GenerationRequest
from docvl.pipeline.model.scripted import ScriptedBackend
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.prompt import ImagePart, Part, TextPart
from docvl.pipeline.settings import Settings

CALLS: list[str] = []
_lock = threading.Lock()
_failures = {"n": 0}
ACTIVE = {"now": 0, "peak": 0}


def reply(content: Sequence[Part], request: GenerationRequest) -> str:
    pages = sorted({p.page for p in content if isinstance(p, ImagePart)})
    name = next(
        (
            p.text.split(":", 1)[1].split(",")[0].strip()
            for p in content
            if isinstance(p, TextPart) and p.text.startswith("<document")
        ),
        "doc",
    )
    first = pages[0] if pages else 1
    with _lock:
        CALLS.append(f"{name}:{first}")
        log = os.environ.get("DOCVL_TEST_CALL_LOG")
        if log:
            with open(log, "a") as fh:
                fh.write(f"{os.getpid()} {first} {name}\n")
        fail_first = int(os.environ.get("DOCVL_TEST_FAIL_FIRST", "0"))
        if _failures["n"] < fail_first:
            _failures["n"] += 1
            raise BackendError(f"scripted transient failure {_failures['n']}")
        ACTIVE["now"] += 1
        ACTIVE["peak"] = max(ACTIVE["peak"], ACTIVE["now"])
    try:
        time.sleep(float(os.environ.get("DOCVL_TEST_DELAY_S", "0")))
    finally:
        with _lock:
            ACTIVE["now"] -= 1
    return json.dumps(
        {
            "title": f"About {name}",
            "summary": f"Summary of {name}.",
            "key_points": [{"point": f"Page {p} of {name}.", "pages": [p]} for p in pages[:12]],
        }
    )


class ConcurrentScripted:
    """Like ScriptedBackend (estimate token counts) but without its global lock: calls overlap, so
    the flows' concurrency limit is what bounds them."""

    name = "scripted"

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.counter = TokenCounter(None)

    def generate(
        self, content: Sequence[Part], requests: Sequence[GenerationRequest]
    ) -> list[Generation]:
        out = []
        for request in requests:
            text = reply(content, request)
            out.append(
                Generation(
                    text=text,
                    finish_reason="stop",
                    input_tokens=self.counter.prompt(content, request.instruction),
                    output_tokens=self.counter.text(text),
                )
            )
        return out

    def close(self) -> None:
        pass


def scripted_backend(settings: Settings) -> ConcurrentScripted:
    return ConcurrentScripted(settings.model)


def locked_scripted_backend(settings: Settings) -> ScriptedBackend:
    """The pipeline's own ScriptedBackend with the same replies (calls serialised by its lock)."""
    return ScriptedBackend(reply, model_id=settings.model)


def reset() -> None:
    with _lock:
        CALLS.clear()
        _failures["n"] = 0
        ACTIVE.update(now=0, peak=0)


def make_pdf(path: Path, pages: int = 2, text: str | None = None) -> Path:
    import pymupdf

    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=300, height=400)
        page.insert_text((30, 60), text or f"{path.stem} page {i + 1}", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(str(path))
    doc.close()
    return path


def make_pdfs(directory: Path, n: int, pages: int = 2) -> list[Path]:
    return [
        make_pdf(directory / f"doc{i:03d}.pdf", pages, text=f"document number {i}")
        for i in range(n)
    ]


def test_settings(cache_dir: Path, **over: Any) -> Settings:
    return Settings(
        backend="scripted",
        cache_dir=cache_dir,
        dpi=36,
        min_pixels=32 * 32,
        max_pixels=64 * 32 * 32,
        **over,
    )


def prefect_env(home: Path) -> dict[str, str]:
    """Quiet, offline environment for Prefect subprocesses and servers."""
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[1])
    env.update(
        PREFECT_HOME=str(home),
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        # importing flows in this process derived the console level from this process's env
        PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="WARNING",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
        PYTHONPATH=os.pathsep.join([repo, str(Path(__file__).resolve().parent)]),
    )
    env.pop("PREFECT_API_URL", None)
    return env


@contextlib.contextmanager
def harness() -> Iterator[None]:
    """prefect_test_harness with heartbeats off and a startup timeout that suits 2-core machines."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


def answer_reply(content: Sequence[Part], request: GenerationRequest) -> str:
    """An Answer citing the first page shown (for questions across documents)."""
    images = [p for p in content if isinstance(p, ImagePart)]
    pages = sorted({p.page for p in images})
    with _lock:
        CALLS.append(f"ask:{len(images)}")
    return json.dumps(
        {
            "answer": "Every document has pages.",
            "found": True,
            "pages": pages[:1],
            "quotes": [],
            "confidence": None,
        }
    )


def answer_backend(settings: Settings) -> ScriptedBackend:
    return ScriptedBackend(answer_reply, model_id=settings.model)


def record_key(path: Path, settings: Settings) -> str | None:
    """The key the runner stores ``path``'s record under (see ``Engine.record_keys``)."""
    engine = Engine(settings, ScriptedBackend(), TokenCounter())
    return engine.record_keys(Unit((path,), (sha256_file(path),)))[0]


#: The base URL :func:`configured_backend` accepts; any other is a wrong setup.
GOOD_URL = "http://good.example.invalid/v1"


def configured_backend(settings: Settings) -> ConcurrentScripted:
    """Models a remote backend that cannot be used with a wrong ``base_url`` (a 401 or an
    unreachable host): building it raises BackendUnavailable, as the real backends do."""
    if settings.base_url != GOOD_URL:
        raise BackendUnavailable(f"cannot reach the model server at {settings.base_url}")
    return ConcurrentScripted(settings.model)


class SlowOnSome(ConcurrentScripted):
    """Models a model that is slow on some documents: a call whose document name starts with
    ``slow`` sleeps ``DOCVL_TEST_SLOW_S`` seconds (default 3) before answering."""

    def generate(
        self, content: Sequence[Part], requests: Sequence[GenerationRequest]
    ) -> list[Generation]:
        header = next(
            (p.text for p in content if isinstance(p, TextPart) and p.text.startswith("<document")),
            "",
        )
        if ": slow" in header:
            time.sleep(float(os.environ.get("DOCVL_TEST_SLOW_S", "3")))
        return super().generate(content, requests)


def slow_on_some_backend(settings: Settings) -> SlowOnSome:
    return SlowOnSome(settings.model)
