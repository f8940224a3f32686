"""Stage 3 of the engine: from window results to one envelope per document (built here only).

Per pass and task, the windows' partial results (in page order) become one output:
* one window: its result as is;
* several, ``summary`` / ``ask``: :func:`~docvl.pipeline.tasks.reduce.reduce_with_model` (text-only
  prompt). If that fails, a deterministic fallback (merged summary; the first answer found) and an
  error record;
* ``extract`` (one window or several): :func:`~docvl.pipeline.engine.extraction.extraction` (merge,
  completeness re-asks, grounding, confidence); :func:`~docvl.pipeline.engine.extraction.contract`
  checks the result against the user's own schema.

A shared pass (a question across documents) is reduced once; every document in it gets the answer,
the shared windows (``shared_with`` names the other files) and their usage, so the usage invariant
holds per envelope (totals over envelopes count shared windows once per document).

Status: ``ok`` when every task has an output and nothing was recorded as an error, ``failed`` when
no task has one, else ``partial``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from docvl.pipeline.engine.extraction import contract, extraction, partials
from docvl.pipeline.engine.prepare import Prepared, document_plan
from docvl.pipeline.engine.windows import WindowResult
from docvl.pipeline.errors import ErrorRecord
from docvl.pipeline.ingest.document import LoadedDocument
from docvl.pipeline.model.base import ModelBackend
from docvl.pipeline.result import (
    AnswerOutput,
    Completeness,
    ExtractionOutput,
    ModelInfo,
    PlanSummary,
    ResultEnvelope,
    Source,
    Status,
    SummaryOutput,
    Timings,
    Usage,
)
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.grounding import ground
from docvl.pipeline.tasks.locate import PageText
from docvl.pipeline.tasks.reduce import (
    merge_partials,
    reduce_with_model,
    uncited_pages,
)
from docvl.pipeline.tasks.specs import TaskSpec
from docvl.schemas import Answer, DocumentSummary

#: How far a server's ``prompt_tokens`` may be from the plan's exact count before a warning.
PROMPT_TOKENS_TOLERANCE = 0.01


def prompt_tokens_warning(wr: WindowResult, n_specs: int) -> str | None:
    """A warning when an OpenAI-compatible server counted a window's prompts more than 1% away
    from the plan's exact count (a gateway that rewrote, cut or dropped content). Only for windows
    whose every task was asked once: re-asks and splits send prompts the plan does not hold."""
    planned, reported = wr.window.input_tokens, wr.usage.input_tokens
    if len(wr.tasks) != n_specs or any(t.attempts != 1 or not t.ok for t in wr.tasks):
        return None
    if planned <= 0 or abs(reported - planned) <= PROMPT_TOKENS_TOLERANCE * planned:
        return None
    return (
        f"pages {wr.window.first_page}-{wr.window.last_page}: the server counted {reported} "
        f"prompt tokens where the plan counted {planned}; a gateway may have changed or dropped "
        "content"
    )


def model_info(backend: ModelBackend, settings: Settings) -> ModelInfo:
    return ModelInfo(
        backend=str(getattr(backend, "name", type(backend).__name__)),
        id=str(getattr(backend, "model_id", settings.model)),
        context_window=settings.context_window,
    )


def failed_envelopes(
    prepared_or_unit: Any, records: list[ErrorRecord], model: ModelInfo, total_s: float = 0.0
) -> list[ResultEnvelope]:
    """One failed envelope per file of a unit (a :class:`Prepared` or its ``unit``)."""
    unit = getattr(prepared_or_unit, "unit", prepared_or_unit)
    return [
        ResultEnvelope(
            source=Source(path=str(path), sha256=sha),
            status="failed",
            errors=records,
            model=model,
            timings=Timings(total=round(total_s, 6)),
        )
        for path, sha in zip(unit.paths, unit.shas, strict=True)
    ]


class _Outputs:
    """Per pass and task: the output; per pass, the usage and errors of the reduce and completeness
    calls that produced them."""

    def __init__(self) -> None:
        self.value: dict[tuple[int, str], BaseModel] = {}
        self.extract: dict[tuple[int, str], ExtractionOutput] = {}
        self.usage: dict[int, Usage] = {}
        self.errors: dict[int, list[ErrorRecord]] = {}


def _fallback(spec: TaskSpec, values: list[BaseModel]) -> BaseModel:
    if spec.name == "summary":
        data, _ = merge_partials(DocumentSummary, values)
        data["summary"] = " ".join(v.summary for v in values if isinstance(v, DocumentSummary))
        return DocumentSummary.model_validate(data)
    answers = [v for v in values if isinstance(v, Answer)]
    return next((a for a in answers if a.found), answers[0])


def combine(
    spec: TaskSpec,
    partials: list[tuple[str, BaseModel]],
    backend: ModelBackend,
    settings: Settings,
    usage: Usage,
    errors: list[ErrorRecord],
) -> BaseModel:
    """One result for a summary/answer task from its window partials (model reduce, fallback)."""
    if len(partials) == 1:
        return partials[0][1]
    reduced = reduce_with_model(backend, spec, partials, settings)
    usage.add(reduced.usage)
    if reduced.data is not None:
        return spec.model.model_validate(reduced.data)
    if reduced.error is not None:
        errors.append(
            reduced.error.model_copy(update={"message": f"reduce: {reduced.error.message}"})
        )
    return _fallback(spec, [v for _, v in partials])


def _reduce_passes(
    prepared: Prepared, results: Sequence[WindowResult], backend: ModelBackend, settings: Settings
) -> _Outputs:
    out = _Outputs()
    for p, pass_ in enumerate(prepared.passes):
        mine = [r for r in results if r.pass_index == p]
        usage, errors = out.usage.setdefault(p, Usage()), out.errors.setdefault(p, [])
        for spec in pass_.specs:
            if spec.name == "extract":
                done = extraction(prepared, pass_, spec, mine, backend, settings, usage, errors)
                if done is not None:
                    out.extract[(p, spec.name)] = done
                continue
            parts = partials(spec, mine)
            if parts:
                out.value[(p, spec.name)] = combine(spec, parts, backend, settings, usage, errors)
    return out


def _chooser(docs: Sequence[LoadedDocument], own: int) -> Any:
    """Ground a cross-document answer's quote on the document it names (else this one)."""
    texts = [PageText(d.pages) for d in docs]

    def choose(record: Mapping[str, Any]) -> PageText:
        number = record.get("document")
        if isinstance(number, int) and 1 <= number <= len(texts):
            return texts[number - 1]
        return texts[own]

    return choose


def build_envelopes(
    prepared: Prepared, results: Sequence[WindowResult], backend: ModelBackend, settings: Settings
) -> list[ResultEnvelope]:
    """Reduce every pass, then build each file's envelope (in unit order)."""
    t0 = time.perf_counter()
    outputs = _reduce_passes(prepared, results, backend, settings)
    reduce_s = time.perf_counter() - t0
    model = model_info(backend, settings)
    envelopes = []
    for i, (path, doc) in enumerate(zip(prepared.unit.paths, prepared.docs, strict=True)):
        errors = list(prepared.errors.get(i, []))
        source = Source(path=str(path), sha256=prepared.unit.shas[i], selected_pages=settings.pages)
        if doc is None:
            envelopes.append(
                ResultEnvelope(
                    source=source,
                    status="failed",
                    errors=errors,
                    model=model,
                    timings=Timings(**prepared.timings[i]),
                )
            )
            continue
        source.kind, source.pages = doc.kind.value, doc.page_count
        planned = document_plan(prepared, i)
        env = ResultEnvelope(
            source=source,
            status="ok",
            warnings=list(doc.warnings),
            model=model,
            plan=PlanSummary(
                exact_tokens=prepared.exact_tokens,
                input_tokens=planned.input_tokens,
                estimated_cost_usd=planned.estimated_cost_usd,
                windows=planned.windows,
            ),
        )
        usage, timings = Usage(), Timings(**prepared.timings[i])
        timings.reduce = round(reduce_s, 6)
        for p, pass_ in enumerate(prepared.passes):
            if i not in pass_.docs:
                continue
            member = pass_.docs.index(i)
            windows = pass_.plans[member].windows
            spans = {tuple((s.doc, s.first_page, s.last_page) for s in w.spans) for w in windows}
            for wr in results:
                key = tuple((s.doc, s.first_page, s.last_page) for s in wr.window.spans)
                if wr.pass_index != p or key not in spans:
                    continue
                usage.add(wr.usage)
                if settings.backend == "openai" and prepared.exact_tokens:
                    gap = prompt_tokens_warning(wr, len(pass_.specs))
                    if gap is not None and gap not in env.warnings:
                        env.warnings.append(gap)
                timings.render += wr.timings.get("render", 0.0)
                timings.prefill += wr.timings.get("prefill", 0.0)
                timings.prefills += int(wr.timings.get("prefills", 0))
                timings.generate += wr.timings.get("generate", 0.0)
                for e in wr.error_records():
                    e = (
                        e
                        if e.page is not None
                        else e.model_copy(update={"page": wr.window.first_page})
                    )
                    if e not in errors:
                        errors.append(e)
            usage.add(outputs.usage[p])
            errors.extend(e for e in outputs.errors[p] if e not in errors)
            if not windows:
                continue
            docs = prepared.loaded(pass_)
            for spec in pass_.specs:
                if (p, spec.name) in outputs.extract:
                    env.extraction = outputs.extract[(p, spec.name)]
                    errors.extend(contract(spec, env.extraction, env.warnings))
                    env.warnings.extend(
                        f"page {c.page} looks incomplete: {c.records} record(s) for "
                        f"{c.expected_rows} table-like line(s)"
                        for c in env.extraction.completeness.pages
                        if c.status == "short"
                    )
                value = outputs.value.get((p, spec.name))
                if isinstance(value, DocumentSummary):
                    env.summary = SummaryOutput(
                        data=value,
                        completeness=Completeness(
                            uncited_pages=uncited_pages(
                                value.model_dump(mode="json"), 1, doc.page_count
                            )
                        ),
                    )
                elif isinstance(value, Answer):
                    quotes = {"quotes": value.model_dump(mode="json")["quotes"]}
                    env.answer = AnswerOutput(
                        question=spec.question or "",
                        data=value,
                        documents=[str(d.path) for d in docs] if pass_.shared else [],
                        grounding=ground(
                            quotes, _chooser(docs, member) if pass_.shared else doc.pages
                        ),
                    )
        env.errors = errors
        env.usage = usage.priced(settings.price_input_per_mtok, settings.price_output_per_mtok)
        timings.total = round(
            sum(
                (
                    timings.load,
                    timings.plan,
                    timings.render,
                    timings.prefill,
                    timings.generate,
                    timings.reduce,
                )
            ),
            6,
        )
        env.timings = timings
        env.status = status_of(env, list(dict.fromkeys(settings.tasks)))
        envelopes.append(env)
    return envelopes


def status_of(envelope: ResultEnvelope, tasks: Sequence[str]) -> Status:
    have = {"summary": envelope.summary, "ask": envelope.answer, "extract": envelope.extraction}
    produced = [t for t in tasks if have.get(t) is not None]
    if tasks and not produced:
        return "failed"
    if len(produced) < len(tasks) or envelope.errors:
        return "partial"
    return "ok"
