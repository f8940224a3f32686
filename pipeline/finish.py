"""The ``finish`` stage: reduce -> completeness -> grounding -> usage, cost and status.

Per task, the windows' partial results (in page order) become one output:
* one window: its result as is;
* several, ``summary`` / ``ask``: :func:`~pipeline.reduce.reduce_with_model` (text-only prompt). If that
  fails, a deterministic fallback (merged summary; the first answer found) and an error record;
* several, ``extract``: :func:`~pipeline.reduce.merge_partials`, then :func:`~pipeline.reduce.complete`
  re-asks about pages no record cites (one call per window, only those pages shown).
Status: ``ok`` when every task has an output and nothing was recorded as an error, ``failed`` when no
task has one, else ``partial``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from pipeline.backends.base import ModelBackend
from pipeline.errors import ErrorRecord
from pipeline.grounding import ground
from pipeline.reduce import complete, merge_partials, reduce_with_model, uncited_pages
from pipeline.result import (
    AnswerOutput,
    Completeness,
    ExtractionOutput,
    PlanSummary,
    ResultEnvelope,
    Source,
    Status,
    SummaryOutput,
    Timings,
    Usage,
    WindowSummary,
)
from pipeline.settings import Settings
from pipeline.tasks import TaskSpec
from schemas import Answer, DocumentSummary

if TYPE_CHECKING:
    from pipeline.analyze import Prepared, WindowResult


def plan_summary(prepared: Prepared) -> PlanSummary:
    tasks: list[str] = [s.name for s in prepared.specs]
    windows = [WindowSummary(index=w.index, first_page=w.first_page, last_page=w.last_page,
                             input_tokens=w.input_tokens, images=w.images, tasks=tasks,
                             shared_with=[str(prepared.docs[s.doc].path) for s in w.spans
                                          if s.doc != prepared.doc_index])
               for w in prepared.plan.windows]
    return PlanSummary(exact_tokens=prepared.exact_tokens, input_tokens=prepared.plan.input_tokens,
                       estimated_cost_usd=prepared.plan.estimated_cost_usd, windows=windows)


def _partials(spec: TaskSpec, results: Sequence[WindowResult], errors: list[ErrorRecord]
              ) -> list[tuple[str, BaseModel]]:
    out: list[tuple[str, BaseModel]] = []
    for wr in results:
        for tp in wr.tasks:
            if tp.task != spec.name:
                continue
            if tp.error is not None:
                errors.append(tp.error if tp.error.page is not None
                              else tp.error.model_copy(update={"page": wr.first_page}))
            if tp.data is not None:
                out.append((f"pages {wr.first_page}-{wr.last_page}", spec.model.model_validate(tp.data)))
    return out


def _fallback_summary(values: list[BaseModel]) -> DocumentSummary:
    data, _ = merge_partials(DocumentSummary, values)
    summaries = [v.summary for v in values if isinstance(v, DocumentSummary)]
    data["summary"] = " ".join(summaries)[:3000]
    data["key_points"] = data.get("key_points", [])[:12]
    return DocumentSummary.model_validate(data)


def _fallback_answer(values: list[BaseModel]) -> Answer:
    answers = [v for v in values if isinstance(v, Answer)]
    return next((a for a in answers if a.found), answers[0])


def combine(spec: TaskSpec, partials: list[tuple[str, BaseModel]], backend: ModelBackend, settings: Settings,
            usage: Usage, errors: list[ErrorRecord]) -> BaseModel:
    """One result for a summary/answer task from its window partials (model reduce, with fallback)."""
    if len(partials) == 1:
        return partials[0][1]
    outcome = reduce_with_model(backend, spec, partials, settings)
    usage.add(outcome.usage)
    if outcome.value is not None:
        return outcome.value
    if outcome.error is not None:
        errors.append(outcome.error.model_copy(update={"message": f"reduce: {outcome.error.message}"}))
    values = [v for _, v in partials]
    return _fallback_summary(values) if spec.name == "summary" else _fallback_answer(values)


def build_envelope(prepared: Prepared, results: Sequence[WindowResult], backend: ModelBackend,
                   settings: Settings) -> ResultEnvelope:
    from pipeline.analyze import model_info, subset_content

    t0 = time.perf_counter()
    doc = prepared.doc
    errors: list[ErrorRecord] = []
    usage = Usage()
    timings = Timings(load=prepared.timings.get("load", 0.0), plan=prepared.timings.get("plan", 0.0))
    for wr in results:
        usage.add(wr.usage)
        timings.render += wr.timings.get("render", 0.0)
        timings.prefill += wr.timings.get("prefill", 0.0)
        timings.prefills += int(wr.timings.get("prefills", 0))
        timings.generate += wr.timings.get("generate", 0.0)
        errors.extend(e for e in wr.errors if e not in errors)
    envelope = ResultEnvelope(
        source=Source(path=str(prepared.path), sha256=doc.sha256, kind=doc.kind.value, pages=doc.page_count),
        status="ok", warnings=list(doc.warnings), model=model_info(backend, settings), plan=plan_summary(prepared),
    )
    ranges = [(w.first_page, w.last_page) for w in prepared.plan.windows]
    for spec in prepared.specs:
        partials = _partials(spec, results, errors)
        if not partials:
            continue
        if spec.name == "extract":
            data, conflicts = merge_partials(spec.model, [v for _, v in partials])
            check = Completeness()
            if len(ranges) > 1:
                done = complete(backend, spec, settings, data, ranges,
                                lambda pages: subset_content(prepared, pages, settings))
                usage.add(done.usage)
                errors.extend(done.errors)
                data, conflicts = done.data, conflicts + done.conflicts
                check = Completeness(reasked_pages=done.reasked_pages, added_records=done.added_records)
            check.uncited_pages = uncited_pages(data, 1, doc.page_count)
            envelope.extraction = ExtractionOutput(
                schema_name=spec.schema_name, schema_version=spec.schema_version, data=data,
                grounding=ground(data, doc.pages), conflicts=conflicts, completeness=check)
        elif spec.name == "summary":
            value = combine(spec, partials, backend, settings, usage, errors)
            assert isinstance(value, DocumentSummary)
            envelope.summary = SummaryOutput(data=value, completeness=Completeness(
                uncited_pages=uncited_pages(value.model_dump(mode="json"), 1, doc.page_count)))
        elif spec.name == "ask":
            value = combine(spec, partials, backend, settings, usage, errors)
            assert isinstance(value, Answer)
            envelope.answer = AnswerOutput(question=spec.question or "", data=value,
                                           grounding=answer_grounding(value, doc.pages))
    envelope.errors = errors
    envelope.usage = usage.priced(settings.price_input_per_mtok, settings.price_output_per_mtok)
    timings.reduce = round(time.perf_counter() - t0, 6)
    timings.total = round(sum((timings.load, timings.plan, timings.render, timings.prefill, timings.generate,
                               timings.reduce)), 6)
    envelope.timings = timings
    envelope.status = status_of(envelope, [s.name for s in prepared.specs])
    return envelope


def answer_grounding(answer: Answer, pages: Any) -> Any:
    """Ground an answer by its quotes (the answer text itself is a paraphrase)."""
    return ground({"quotes": answer.model_dump(mode="json")["quotes"]}, pages)


def status_of(envelope: ResultEnvelope, tasks: Sequence[str]) -> Status:
    have = {"summary": envelope.summary, "ask": envelope.answer, "extract": envelope.extraction}
    produced = [t for t in tasks if have.get(t) is not None]
    if tasks and not produced:
        return "failed"
    if len(produced) < len(tasks) or envelope.errors:
        return "partial"
    return "ok"

