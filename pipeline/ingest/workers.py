"""Rendering in worker processes for long documents (see
:func:`docvl.pipeline.ingest.render.use_workers`).

Each worker opens its own Document (PyMuPDF objects never cross processes) and renders chunks of
``CHUNK_PAGES`` pages; pixels come back through shared memory and pages are yielded in order with at
most ``2 * workers`` chunks in flight. A crashed worker is an ``InternalError`` (a
failure of this machine, not of the document: never cached as final).
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import shared_memory

import pymupdf
from PIL import Image

from docvl.pipeline.errors import InternalError, RenderFailed
from docvl.pipeline.ingest.document import LoadedDocument
from docvl.pipeline.ingest.raster import (
    CHUNK_PAGES,
    START_METHOD,
    RenderedPage,
    open_for_render,
    render_pdf_raw,
)

_WORKER_DOC: pymupdf.Document | None = None

#: ("ok", page, width, height, shared-memory name) or ("error", page, message). Pixels travel
#: through shared memory: a 3 MB page pushed through the result pipe costs 64 KiB round trips, which
#: is what dominated the parallel path on a busy machine.
ChunkResult = list[tuple[str, int, int, int, str] | tuple[str, int, str]]


def _worker_init(path: str, password: str | None) -> None:
    global _WORKER_DOC
    _WORKER_DOC = open_for_render(path, password)


def _worker_render(jobs: list[tuple[int, tuple[int, int]]]) -> ChunkResult:
    out: ChunkResult = []
    for number, target in jobs:
        try:
            assert _WORKER_DOC is not None, "worker not initialised"
            width, height, data = render_pdf_raw(_WORKER_DOC, number, target)
            shm = shared_memory.SharedMemory(create=True, size=len(data))
            _buffer(shm)[: len(data)] = data
            out.append(("ok", number, width, height, shm.name))
            shm.close()
        except RenderFailed as exc:
            out.append(("error", number, exc.message))
        except Exception as exc:
            out.append(("error", number, f"page {number}: {type(exc).__name__}: {exc}"))
    return out


def _buffer(shm: shared_memory.SharedMemory) -> memoryview:
    if shm.buf is None:
        raise RenderFailed("shared memory segment is closed")
    return shm.buf


def _receive(name: str, width: int, height: int) -> Image.Image:
    shm = shared_memory.SharedMemory(name=name)
    try:
        return Image.frombytes("RGB", (width, height), bytes(_buffer(shm)[: width * height * 3]))
    finally:
        shm.close()
        shm.unlink()


def _discard(results: ChunkResult) -> None:
    for item in results:
        if item[0] == "ok":
            with contextlib.suppress(OSError):
                shm = shared_memory.SharedMemory(name=str(item[4]))  # type: ignore[misc]
                shm.close()
                shm.unlink()


def iter_parallel(
    doc: LoadedDocument, numbers: list[int], targets: dict[int, tuple[int, int]], workers: int
) -> Iterator[RenderedPage]:
    chunks = [
        [(n, targets[n]) for n in numbers[i : i + CHUNK_PAGES]]
        for i in range(0, len(numbers), CHUNK_PAGES)
    ]
    workers = min(workers, len(chunks))
    window = 2 * workers
    ctx = multiprocessing.get_context(START_METHOD)
    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(str(doc.render_path), doc.password),
    )
    pending: deque[tuple[int, Future[ChunkResult]]] = deque()
    todo = iter(chunks)
    results: ChunkResult = []
    try:
        for chunk in todo:
            pending.append((chunk[0][0], executor.submit(_worker_render, chunk)))
            if len(pending) >= window:
                break
        while pending:
            first, future = pending.popleft()
            try:
                results = future.result()
            except BrokenProcessPool as exc:
                raise InternalError(
                    f"page {first}: a render worker process died ({exc})", page=first
                ) from exc
            except RenderFailed as exc:  # the initializer failed to open the document
                raise RenderFailed(exc.message, page=first) from exc
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt[0][0], executor.submit(_worker_render, nxt)))
            while results:
                item = results.pop(0)
                if item[0] == "error":
                    raise RenderFailed(str(item[2]), page=item[1])
                _, number, width, height, name = item  # type: ignore[misc]
                yield RenderedPage(number, _receive(name, width, height))
    finally:
        _discard(results)
        for _, future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
        for _, future in pending:
            if future.done() and not future.cancelled() and future.exception() is None:
                _discard(future.result())
