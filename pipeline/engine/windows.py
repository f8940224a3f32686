"""Stage 2 of the engine: run one window. Render its pages, then every task of its pass on them (one
batched first attempt sharing one prefill, then re-asks; see :mod:`docvl.pipeline.tasks.repair`).

:func:`run_window` never raises: rendering failures, backend failures and bugs become error records
in the :class:`WindowResult`, whose policy (:func:`docvl.pipeline.policy.is_final`) tells a runner
whether it may be cached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, Field

from docvl.pipeline.engine.prepare import Pass, Prepared
from docvl.pipeline.errors import (
    DocvlError,
    ErrorRecord,
    InternalError,
    OutputTooLarge,
    RenderFailed,
    ReplyTooLong,
)
from docvl.pipeline.ingest.document import LoadedDocument
from docvl.pipeline.ingest.packed import pack, unpacked
from docvl.pipeline.ingest.render import iter_rendered
from docvl.pipeline.model.base import ModelBackend
from docvl.pipeline.plan.planner import page_content, window_content
from docvl.pipeline.plan.prompt import ImagePart, Part, document_header
from docvl.pipeline.result import Span, Usage, Window
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.repair import TaskResult, run_tasks
from docvl.pipeline.tasks.specs import TaskSpec

log = logging.getLogger(__name__)
#: Content with more image pixels than this keeps its page images PNG-packed until the model input
#: needs them (:mod:`docvl.pipeline.ingest.packed`): 32 MP is ~25 pages, 96 MB of RGB.
PACK_MIN_PIXELS = 32 * 1024 * 1024


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
    docs: Sequence[LoadedDocument],
    content: Sequence[Part],
    settings: Settings,
    cache: dict[tuple[int, int], Any] | None = None,
) -> list[Part]:
    """Render every page an ImagePart of ``content`` names and attach the images (planned size).
    Pages already in ``cache`` (``(doc, page)`` -> image) are not rendered again; new ones are
    added to it. Over :data:`PACK_MIN_PIXELS` the images are kept PNG-packed (bounded memory)."""
    images = cache if cache is not None else {}
    wanted: dict[int, list[int]] = {}
    pixels = 0
    for part in content:
        if isinstance(part, ImagePart):
            pixels += part.width * part.height
            if (part.doc, part.page) not in images:
                wanted.setdefault(part.doc, []).append(part.page)
    keep = pack if pixels > PACK_MIN_PIXELS else (lambda image: image)
    for doc_index, pages in wanted.items():
        for rendered in iter_rendered(docs[doc_index], settings, pages=pages):
            images[(doc_index, rendered.page)] = keep(rendered.image)
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
                image = keep(unpacked(image).resize((part.width, part.height)))
            part = replace(part, image=image)
        out.append(part)
    return out


class _Splitter:
    """Runs one task again over halves of a window whose reply was too long, recursively; a single
    page is re-asked with a larger output budget, up to what the context leaves."""

    def __init__(
        self,
        prepared: Prepared,
        docs: list[LoadedDocument],
        backend: ModelBackend,
        settings: Settings,
        images: dict[tuple[int, int], Any],
    ) -> None:
        self.prepared, self.docs, self.backend, self.settings = prepared, docs, backend, settings
        self.images = images

    def content(self, pages: list[tuple[int, int]]) -> list[Part]:
        return attach_images(
            self.docs,
            window_content(self.docs, _spans(pages), self.settings),
            self.settings,
            self.images,
        )

    def run(
        self, spec: TaskSpec, pages: list[tuple[int, int]], spent: TaskResult
    ) -> list[TaskResult]:
        """Results covering ``pages`` for ``spec``; ``spent`` (the too-long attempt) is charged to
        the first of them."""
        if len(pages) > 1:
            mid = len(pages) // 2
            out: list[TaskResult] = []
            for half in (pages[:mid], pages[mid:]):
                [result] = run_tasks(
                    self.backend, self.content(half), [spec], self.settings, page=half[0][1]
                )
                out.extend(self.run(spec, half, result) if _too_long(result) else [result])
        else:
            out = [self.enlarge(spec, pages)]
        _charge(out[0], spent)
        return out

    def enlarge(self, spec: TaskSpec, pages: list[tuple[int, int]]) -> TaskResult:
        content = self.content(pages)
        room = self.settings.context_window - self.prepared.counter.prompt(
            content, spec.instruction
        )
        spent = TaskResult(task=spec.name)
        budget = spec.max_new_tokens
        while budget < room:
            budget = min(budget * 4, room)
            bigger = replace(spec, max_new_tokens=budget)
            [result] = run_tasks(self.backend, content, [bigger], self.settings, page=pages[0][1])
            _charge(result, spent)
            if not _too_long(result):
                return result
            spent = result
        name = self.docs[pages[0][0]].path.name
        error = OutputTooLarge(
            f"{spec.name}: the reply for page {pages[0][1]} of {name} does not fit "
            f"{budget} output tokens, all the context leaves",
            page=pages[0][1],
        )
        return spent.model_copy(update={"error": error.record(), "data": None})


def _too_long(result: TaskResult) -> bool:
    return result.error is not None and result.error.code == ReplyTooLong.code


def _charge(result: TaskResult, spent: TaskResult) -> None:
    """Add an earlier attempt's cost to ``result`` (usage is never lost)."""
    result.usage.add(spent.usage)
    result.attempts += spent.attempts
    for key, value in spent.timings.items():
        result.timings[key] = result.timings.get(key, 0.0) + value


def _spans(pages: list[tuple[int, int]]) -> list[Span]:
    spans: list[Span] = []
    for doc, page in pages:
        if spans and spans[-1].doc == doc and spans[-1].last_page == page - 1:
            spans[-1] = spans[-1].model_copy(update={"last_page": page})
        else:
            spans.append(Span(doc=doc, first_page=page, last_page=page))
    return spans


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
        images: dict[tuple[int, int], Any] = {}
        content = attach_images(
            docs, window_content(docs, window.spans, settings), settings, images
        )
        render_s = time.perf_counter() - t0
        firsts = run_tasks(backend, content, pass_.specs, settings, page=window.first_page)
        del content
        pages = [(s.doc, p) for s in window.spans for p in range(s.first_page, s.last_page + 1)]
        splitter = _Splitter(prepared, docs, backend, settings, images)
        tasks = []
        for spec, first in zip(pass_.specs, firsts, strict=True):
            if _too_long(first):  # never the same request again: split the pages
                tasks.extend(splitter.run(spec, pages, first))
            else:
                tasks.append(first)
    except Exception as exc:
        record = _record(exc, f"window {window_index + 1} of {prepared.unit.paths[0].name}")
        result.errors.append(record)
        result.tasks = [TaskResult(task=s.name, error=record) for s in pass_.specs]
        result.timings = {"render": round(time.perf_counter() - t0, 6)}
        return result
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
