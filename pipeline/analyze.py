"""The analysis stages the flows wrap: prepare -> run_window (per window) -> finish.

``analyze_document`` chains them for one file and never raises a DocvlError (a failed envelope carries
the error record instead); ``analyze_many`` does a batch and handles cross-document questions
(``settings.share_windows`` with the ``ask`` task, see :mod:`pipeline.crossdoc`).

Usage invariant: with an exact :class:`~pipeline.count.TokenCounter` and a backend that reports prompt
tokens the same way, ``envelope.usage.input_tokens == envelope.plan.input_tokens`` (the sum of the plan's
window ``input_tokens``) whenever every first attempt validates and no reduce or completeness call is
made, because each window sends one request per task over exactly the planned content and instruction.
Re-asks, reduce and completeness calls add to usage on top of the plan.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from pipeline.backends.base import ModelBackend
from pipeline.count import TokenCounter
from pipeline.document import LoadedDocument
from pipeline.errors import DocvlError, ErrorRecord, RenderFailed
from pipeline.plan import DocumentPlan, SpanPlan, page_content, plan_loaded, window_content
from pipeline.prompt import ImagePart, Part, document_header
from pipeline.repair import TaskOutcome, run_tasks
from pipeline.result import ModelInfo, ResultEnvelope, Source, Usage, failed_envelope
from pipeline.settings import Settings
from pipeline.tasks import TaskSpec, task_specs


@dataclass
class Prepared:
    """A loaded, planned document. Holds the open document: call :meth:`close` when done.

    ``docs`` are the documents the plan's spans index (just ``[doc]`` unless windows are shared) and
    ``doc_index`` is this document's position in them.
    """

    path: Path
    doc: LoadedDocument
    plan: DocumentPlan
    specs: list[TaskSpec]
    exact_tokens: bool
    timings: dict[str, float] = field(default_factory=dict)
    docs: list[LoadedDocument] = field(default_factory=list)
    doc_index: int = 0

    def __post_init__(self) -> None:
        if not self.docs:
            self.docs = [self.doc]

    def close(self) -> None:
        self.doc.close()


class TaskPartial(BaseModel):
    """One task's result on one window: validated data (dumped) or the error that ended it."""

    task: str
    data: dict[str, Any] | None = None
    error: ErrorRecord | None = None
    attempts: int = 0
    #: The raw last reply, kept when the task failed (for debugging; not in the envelope).
    raw: str | None = None
    usage: Usage = Field(default_factory=Usage)


class WindowResult(BaseModel):
    index: int
    first_page: int
    last_page: int
    spans: list[SpanPlan]
    planned_input_tokens: int
    tasks: list[TaskPartial] = Field(default_factory=list)
    #: Window-level failures (rendering); the tasks then carry the same record.
    errors: list[ErrorRecord] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    #: Seconds: render, prefill, generate.
    timings: dict[str, float] = Field(default_factory=dict)


# --- prepare --------------------------------------------------------------------------------------

def error_from_record(record: ErrorRecord) -> DocvlError:
    """The typed DocvlError for a record (planner failures come back as records)."""
    stack: list[type[DocvlError]] = [DocvlError]
    while stack:
        cls = stack.pop()
        if cls.code == record.code:
            try:
                return cls(record.message, page=record.page)
            except TypeError:  # needs more than a message (ValidationFailed)
                pass
        stack.extend(cls.__subclasses__())
    return DocvlError(record.message, page=record.page)


def prepare(path: Path, settings: Settings, counter: TokenCounter) -> Prepared:
    """Load and plan one document. Raises the typed DocvlError for bad input or bad settings."""
    from pipeline.load import load_document

    specs = task_specs(settings)
    t0 = time.perf_counter()
    doc = load_document(Path(path), settings)
    load_s = time.perf_counter() - t0
    try:
        prepared = prepare_loaded(doc, settings, counter, specs)
    except BaseException:
        doc.close()
        raise
    prepared.timings["load"] = round(load_s, 6)
    return prepared


def prepare_loaded(doc: LoadedDocument, settings: Settings, counter: TokenCounter,
                   specs: Sequence[TaskSpec]) -> Prepared:
    t0 = time.perf_counter()
    plan = plan_loaded([doc], settings, counter, [s.instruction for s in specs])
    [doc_plan] = plan.documents
    if doc_plan.status == "failed" and doc_plan.error is not None:
        raise error_from_record(doc_plan.error)
    return Prepared(path=doc.path, doc=doc, plan=doc_plan, specs=list(specs), exact_tokens=plan.exact_tokens,
                    timings={"plan": round(time.perf_counter() - t0, 6)})


# --- run_window -----------------------------------------------------------------------------------

def attach_images(docs: Sequence[LoadedDocument], content: Sequence[Part], settings: Settings) -> list[Part]:
    """Render every page an ImagePart of ``content`` names and attach the images (exact planned size)."""
    from pipeline.render import iter_rendered

    wanted: dict[int, list[int]] = {}
    for part in content:
        if isinstance(part, ImagePart):
            wanted.setdefault(part.doc, []).append(part.page)
    images: dict[tuple[int, int], Any] = {}
    for doc_index, pages in wanted.items():
        try:
            for rendered in iter_rendered(docs[doc_index], settings, pages=pages):
                images[(doc_index, rendered.page)] = rendered.image
        except DocvlError:
            raise
        except Exception as exc:  # a renderer bug must not take the batch down
            raise RenderFailed(f"rendering {docs[doc_index].path.name} failed: {exc}") from exc
    out: list[Part] = []
    for part in content:
        if isinstance(part, ImagePart):
            image = images.get((part.doc, part.page))
            if image is None:
                raise RenderFailed(f"page {part.page} of {docs[part.doc].path.name} was not rendered",
                                   page=part.page)
            if image.size != (part.width, part.height):  # keep the planned token count exact
                image = image.resize((part.width, part.height))
            part = replace(part, image=image)
        out.append(part)
    return out


def _stage_timings(timings: dict[str, float]) -> dict[str, float]:
    return {"prefill": timings.get("prefill_s", 0.0), "prefills": timings.get("prefills", 0.0),
            "generate": timings.get("decode_s", 0.0) + timings.get("request_s", 0.0)}


def _partial(outcome: TaskOutcome) -> TaskPartial:
    return TaskPartial(task=outcome.spec.name, attempts=outcome.attempts, usage=outcome.usage, error=outcome.error,
                       data=outcome.value.model_dump(mode="json") if outcome.value is not None else None,
                       raw=outcome.raw if outcome.value is None else None)


def run_window(prepared: Prepared, window_index: int, backend: ModelBackend, settings: Settings,
               specs: Sequence[TaskSpec] | None = None) -> WindowResult:
    """Render one window's pages and run every task on them (one batched first attempt, then re-asks).

    Never raises a DocvlError: rendering and backend failures become error records in the result.
    """
    window = prepared.plan.windows[window_index]
    specs = prepared.specs if specs is None else specs
    result = WindowResult(index=window.index, first_page=window.first_page, last_page=window.last_page,
                          spans=window.spans, planned_input_tokens=window.input_tokens)
    t0 = time.perf_counter()
    try:
        content = attach_images(prepared.docs, window_content(prepared.docs, window.spans, settings), settings)
    except DocvlError as exc:
        record = exc.record()
        result.errors.append(record)
        result.tasks = [TaskPartial(task=s.name, error=record) for s in specs]
        result.timings = {"render": round(time.perf_counter() - t0, 6)}
        return result
    render_s = time.perf_counter() - t0
    outcomes = run_tasks(backend, content, specs, settings, page=window.first_page)
    del content
    result.tasks = [_partial(o) for o in outcomes]
    timings: dict[str, float] = {"render": round(render_s, 6), "prefill": 0.0, "prefills": 0.0, "generate": 0.0}
    for outcome in outcomes:
        result.usage.add(outcome.usage)
        for key, value in _stage_timings(outcome.timings).items():
            timings[key] += value
    result.timings = {k: round(v, 6) for k, v in timings.items()}
    return result


def subset_content(prepared: Prepared, pages: Sequence[int], settings: Settings) -> list[Part]:
    """Content for just ``pages`` of the prepared document (the completeness re-ask), images attached."""
    doc, i = prepared.doc, prepared.doc_index
    parts: list[Part] = [document_header(i + 1, doc.path.name, doc.page_count)]
    for page in pages:
        parts.extend(page_content(i, doc.pages[page - 1], doc.kind, settings))
    return attach_images(prepared.docs, parts, settings)


# --- finish / analyze -----------------------------------------------------------------------------

def model_info(backend: ModelBackend, settings: Settings) -> ModelInfo:
    return ModelInfo(backend=str(getattr(backend, "name", type(backend).__name__)),
                     id=str(getattr(backend, "model_id", settings.model)), context_window=settings.context_window)


def finish(prepared: Prepared, window_results: Sequence[WindowResult], backend: ModelBackend,
           settings: Settings) -> ResultEnvelope:
    """Reduce the windows' partial results, check completeness, ground, and build the envelope."""
    from pipeline.finish import build_envelope

    return build_envelope(prepared, window_results, backend, settings)


def analyze_document(path: Path, settings: Settings, backend: ModelBackend, counter: TokenCounter) -> ResultEnvelope:
    """All stages for one document. Never raises a DocvlError: failures come back as a failed envelope."""
    t0 = time.perf_counter()
    try:
        prepared = prepare(Path(path), settings, counter)
    except DocvlError as exc:
        return failed_envelope(str(path), [exc.record()], model=model_info(backend, settings),
                               total_s=time.perf_counter() - t0)
    try:
        results = [run_window(prepared, w.index, backend, settings) for w in prepared.plan.windows]
        envelope = finish(prepared, results, backend, settings)
    except DocvlError as exc:
        envelope = failed_envelope(str(path), [exc.record()], model=model_info(backend, settings))
        envelope.source = Source(path=str(path), sha256=prepared.doc.sha256, kind=prepared.doc.kind.value,
                                 pages=prepared.doc.page_count)
    finally:
        prepared.close()
    envelope.timings.total = round(time.perf_counter() - t0, 6)
    return envelope


def analyze_many(paths: Iterable[Path], settings: Settings, backend: ModelBackend,
                 counter: TokenCounter) -> Iterator[ResultEnvelope]:
    """One envelope per path, in order. With ``share_windows`` and the ``ask`` task, the question is
    answered across all documents (shared windows) and each document's envelope carries that answer."""
    paths = [Path(p) for p in paths]
    if settings.share_windows and "ask" in settings.tasks and len(paths) > 1:
        from pipeline.crossdoc import analyze_shared

        yield from analyze_shared(paths, settings, backend, counter)
        return
    for path in paths:
        yield analyze_document(path, settings, backend, counter)
