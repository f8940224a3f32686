"""Stage 2 of the engine: run one window. Render its pages, then every task of its pass on them (one
batched first attempt sharing one prefill, then re-asks; see :mod:`pipeline.tasks.repair`).

:func:`run_window` never raises: rendering failures, backend failures and bugs become error records
in the :class:`WindowResult`, whose policy (:func:`pipeline.errors.is_final`) tells a runner whether
it may be cached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, Field

from pipeline.engine.prepare import Pass, Prepared
from pipeline.errors import DocvlError, ErrorRecord, InternalError, RenderFailed
from pipeline.ingest.document import LoadedDocument
from pipeline.ingest.render import iter_rendered
from pipeline.model.base import ModelBackend
from pipeline.plan.planner import page_content, window_content
from pipeline.plan.prompt import ImagePart, Part, document_header
from pipeline.result import Usage, Window
from pipeline.settings import Settings
from pipeline.tasks.repair import TaskResult, run_tasks

log = logging.getLogger(__name__)


class WindowResult(BaseModel):
    """Every task's result on one window of one pass."""

    pass_index: int
    window: Window
    tasks: list[TaskResult] = Field(default_factory=list)
    #: Window-level failures (rendering, bugs); the tasks then carry the same record.
    errors: list[ErrorRecord] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    #: Seconds: render, prefill, generate; and prefills (prompts computed from scratch).
    timings: dict[str, float] = Field(default_factory=dict)

    def error_records(self) -> list[ErrorRecord]:
        """Window-level and task errors, each once."""
        out = list(self.errors)
        out.extend(t.error for t in self.tasks if t.error is not None and t.error not in out)
        return out


def attach_images(
    docs: Sequence[LoadedDocument], content: Sequence[Part], settings: Settings
) -> list[Part]:
    """Render every page an ImagePart of ``content`` names and attach the images (planned size)."""
    wanted: dict[int, list[int]] = {}
    for part in content:
        if isinstance(part, ImagePart):
            wanted.setdefault(part.doc, []).append(part.page)
    images: dict[tuple[int, int], Any] = {}
    for doc_index, pages in wanted.items():
        for rendered in iter_rendered(docs[doc_index], settings, pages=pages):
            images[(doc_index, rendered.page)] = rendered.image
    out: list[Part] = []
    for part in content:
        if isinstance(part, ImagePart):
            image = images.get((part.doc, part.page))
            if image is None:
                raise RenderFailed(
                    f"page {part.page} of {docs[part.doc].path.name} was not rendered",
                    page=part.page,
                )
            if image.size != (part.width, part.height):  # keep the planned token count exact
                image = image.resize((part.width, part.height))
            part = replace(part, image=image)
        out.append(part)
    return out


def _stage_timings(timings: dict[str, float]) -> dict[str, float]:
    return {
        "prefill": timings.get("prefill_s", 0.0),
        "prefills": timings.get("prefills", 0.0),
        "generate": timings.get("decode_s", 0.0) + timings.get("request_s", 0.0),
    }


def run_window(
    prepared: Prepared,
    pass_index: int,
    window_index: int,
    backend: ModelBackend,
    settings: Settings,
) -> WindowResult:
    """Render one window's pages and run every task of its pass on them. Never raises."""
    pass_ = prepared.passes[pass_index]
    window = pass_.windows[window_index]
    result = WindowResult(pass_index=pass_index, window=window)
    t0 = time.perf_counter()
    try:
        docs = prepared.loaded(pass_)
        content = attach_images(docs, window_content(docs, window.spans, settings), settings)
        render_s = time.perf_counter() - t0
        tasks = run_tasks(backend, content, pass_.specs, settings, page=window.first_page)
    except Exception as exc:
        record = _record(exc, f"window {window_index + 1} of {prepared.unit.paths[0].name}")
        result.errors.append(record)
        result.tasks = [TaskResult(task=s.name, error=record) for s in pass_.specs]
        result.timings = {"render": round(time.perf_counter() - t0, 6)}
        return result
    del content
    result.tasks = tasks
    timings: dict[str, float] = {
        "render": render_s,
        "prefill": 0.0,
        "prefills": 0.0,
        "generate": 0.0,
    }
    for task in tasks:
        result.usage.add(task.usage)
        for key, value in _stage_timings(task.timings).items():
            timings[key] += value
    result.timings = {k: round(v, 6) for k, v in timings.items()}
    return result


def _record(exc: Exception, where: str) -> ErrorRecord:
    """A DocvlError's own record; anything else is a bug: an ``internal_error`` (never final)."""
    if isinstance(exc, DocvlError):
        return exc.record()
    log.exception("internal error in %s", where)
    return InternalError(f"{where}: {type(exc).__name__}: {exc}").record()


def subset_content(
    prepared: Prepared, pass_: Pass, member: int, pages: Sequence[int], settings: Settings
) -> list[Part]:
    """Content for just ``pages`` of the pass's document ``member`` (the completeness re-ask)."""
    docs = prepared.loaded(pass_)
    doc = docs[member]
    parts: list[Part] = [document_header(member + 1, doc.path.name, doc.page_count)]
    for page in pages:
        parts.extend(page_content(member, doc.pages[page - 1], doc.kind, settings))
    return attach_images(docs, parts, settings)
