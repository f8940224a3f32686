"""PDF text layers extracted in a worker process, concurrently with rendering on the main process.

Reading a page's text makes MuPDF interpret its content stream a second time (the first is for the
pixmap): about as long as rendering the page. One worker process (spawned once per process, on the
first PDF, and kept for the batch) takes that pass off the render path, so the two cores work at
once: :func:`submit` returns a :class:`PendingLayer`, the :class:`LoadedDocument` carries it and
takes the text in when ``pages`` is first read (see ``LoadedDocument.join``).

The layer is the same as a serial load's: the worker runs :func:`textlayer.read_layer` on its own
``Document``; MuPDF's messages of both processes are merged in order. When the worker is switched
off (``settings.text_worker``: opt-in), still starting, or busy with another
document, :func:`submit` returns None and the caller extracts in-process, as before. A failed
extraction is the document's typed error: ``corrupt_document`` for a file MuPDF cannot read, else
``internal_error`` (a worker that died included); never a hang.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import signal
import sys
import threading
import types
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pymupdf

from docvl.pipeline.errors import CorruptDocument, DocvlError, InternalError
from docvl.pipeline.ingest import textlayer
from docvl.pipeline.ingest.document import PageInfo
from docvl.pipeline.ingest.raster import MUPDF_ERRORS, START_METHOD, open_pdf_file
from docvl.pipeline.settings import Settings

#: MuPDF messages copied into a document's warnings, at most.
MAX_MUPDF_WARNINGS = 5
REPAIRED = "the file is damaged; MuPDF repaired its structure"
PR_SET_PDEATHSIG = 1

#: What the worker sends back: ("ok", pages, warnings, repaired, MuPDF lines) or
#: ("corrupt" | "internal", message).
JobResult = tuple[str, list[PageInfo], list[str], bool, list[str]] | tuple[str, str]

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_ready: Future[bool] | None = None
_inflight: list[Future[JobResult]] = []


def mupdf_lines() -> list[str]:
    """MuPDF's warning store of this process since the last call (emptied), each line once."""
    text = pymupdf.TOOLS.mupdf_warnings(reset=True)  # type: ignore[no-untyped-call]
    seen: list[str] = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line and line not in seen:
            seen.append(line)
    return seen


def mupdf_warnings(lines: list[str]) -> list[str]:
    """``lines`` as document warnings: the first :data:`MAX_MUPDF_WARNINGS`, then a count."""
    extra = len(lines) - MAX_MUPDF_WARNINGS
    out = [f"MuPDF: {line}" for line in lines[:MAX_MUPDF_WARNINGS]]
    if extra > 0:
        out.append(f"MuPDF: {extra} more message(s)")
    return out


# --- in the worker --------------------------------------------------------------------------------


def _ping() -> bool:
    return True


def extract_job(path: str, password: str | None) -> JobResult:
    """Open the PDF and read its layer (runs in the worker). Never raises: errors are results."""
    name = Path(path).name
    mupdf_lines()
    try:
        doc = open_pdf_file(path)
        try:
            if doc.needs_pass and not (password is not None and doc.authenticate(password)):  # type: ignore[no-untyped-call]
                return ("internal", f"{name}: the text worker cannot open the encrypted PDF")
            pages, warnings = textlayer.read_layer(doc)
            repaired = bool(doc.is_repaired)
        finally:
            doc.close()  # type: ignore[no-untyped-call]
    except MUPDF_ERRORS as exc:
        return ("corrupt", f"{name}: the PDF cannot be read ({type(exc).__name__}: {exc})")
    except Exception as exc:
        return ("internal", f"{name}: text worker: {type(exc).__name__}: {exc}")
    return ("ok", pages, warnings, repaired, mupdf_lines())


# --- in the main process --------------------------------------------------------------------------


class PendingLayer:
    """A text layer on its way from the worker. ``main_lines`` and ``main_repaired`` are what the
    loading process itself saw (its MuPDF messages, a repair), merged in by :meth:`result`."""

    def __init__(self, future: Future[JobResult], name: str) -> None:
        self.future = future
        self.name = name
        self.main_lines: list[str] = []
        self.main_repaired = False

    def result(self) -> tuple[list[PageInfo], list[str]]:
        try:
            out = self.future.result()
        except BrokenProcessPool as exc:  # the worker died: the next document gets a fresh one
            _forget_pool()
            raise InternalError(
                textlayer.clean_text(f"{self.name}: the text-layer worker process died ({exc})")
            ) from exc
        except Exception as exc:  # an unpicklable result, a cancelled job
            raise InternalError(
                textlayer.clean_text(f"{self.name}: the text-layer worker failed ({exc!r})")
            ) from exc
        if out[0] != "ok" or len(out) != 5:
            message = textlayer.clean_text(str(out[1]))
            error: DocvlError = (
                CorruptDocument(message) if out[0] == "corrupt" else InternalError(message)
            )
            raise error
        _, pages, warnings, repaired, lines = out
        lines = self.main_lines + [line for line in lines if line not in self.main_lines]
        warnings = ([REPAIRED] if repaired or self.main_repaired else []) + warnings
        warnings += mupdf_warnings(lines)
        return pages, [textlayer.clean_text(w) for w in warnings]

    def cancel(self) -> None:
        self.future.cancel()


def _worker_init() -> None:  # pragma: no cover - runs in the worker
    """The worker leaves signals to docvl: a terminal's Ctrl-C (sent to the whole process group)
    is docvl's to handle, and the kernel kills the worker when docvl dies, even by SIGKILL
    (``PR_SET_PDEATHSIG``), so no worker outlives its run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start() -> Future[bool]:
    """Start the worker (once per process) without waiting; the future is done once it runs."""
    global _pool, _ready
    with _lock:
        if _pool is None or _ready is None:
            _pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context(START_METHOD),
                initializer=_worker_init,
            )
            with _main_hidden():  # the worker process is spawned by this first submit
                _ready = _pool.submit(_ping)
        return _ready


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Spawn without the caller's ``__main__``: a spawned child re-runs the main script to rebuild
    it, which would execute an unguarded script's top level (and fail) in the worker. The worker
    needs nothing from it (its job is this module's :func:`extract_job`)."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def submit(path: Path, password: str | None, settings: Settings) -> PendingLayer | None:
    """Queue ``path``'s text layer on the worker, or None: extract in-process instead (worker off,
    not started yet, or busy with another document: a layer never waits behind another)."""
    if not settings.text_worker:
        return None
    ready = start()
    with _lock:
        _inflight[:] = [f for f in _inflight if not f.done()]
        if _pool is None or not ready.done() or _inflight:
            return None
        if ready.exception() is not None:
            _forget_pool_locked()
            return None
        try:
            # absolute: the worker keeps the working directory it was started in
            future = _pool.submit(extract_job, str(Path(path).resolve()), password)
        except RuntimeError:  # the pool broke or shut down since
            _forget_pool_locked()
            return None
        _inflight.append(future)
    return PendingLayer(future, path.name)


def _forget_pool() -> None:
    with _lock:
        _forget_pool_locked()


def _forget_pool_locked() -> None:
    """Drop a broken pool: the next document starts a fresh worker."""
    global _pool, _ready
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
    _pool, _ready = None, None
    _inflight.clear()


def shutdown(wait: bool = False) -> None:
    """Stop the worker (it is started again when needed); ``wait``: until its process has
    exited."""
    global _pool, _ready
    with _lock:
        pool, _pool, _ready = _pool, None, None
        _inflight.clear()
    if pool is not None:
        pool.shutdown(wait=wait, cancel_futures=True)
