"""The extraction of one pass: merged windows, completeness re-asks, grounding, confidence, and
the user's own contract.

* each window contributes the records of the pages it owns (:func:`owned_pages`: a page shared
  with the next segment belongs to that segment, which sees what follows it);
* :func:`~docvl.pipeline.tasks.reduce.merge_partials` merges them in page order, then
  :func:`~docvl.pipeline.tasks.completeness.complete` re-asks the pages that look incomplete;
* every record is grounded on its page and gets the confidence of the reply that produced it
  (:mod:`docvl.pipeline.engine.confidence`; re-asked records included);
* :func:`contract` checks the merged output against the user's JSON Schema as written (or the
  pydantic model), and turns the schema's numeric invariants into warnings.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from docvl.pipeline.engine.confidence import add_confidence, record_confidences, window_replies
from docvl.pipeline.engine.prepare import Pass, Prepared
from docvl.pipeline.engine.windows import WindowResult, subset_content
from docvl.pipeline.errors import ErrorRecord, ValidationFailed
from docvl.pipeline.model.base import ModelBackend
from docvl.pipeline.result import Completeness, ExtractionOutput, Usage
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.completeness import complete, expected_rows, page_completeness
from docvl.pipeline.tasks.grounding import ground
from docvl.pipeline.tasks.reduce import (
    keep_pages,
    merge_partials,
    record_list_fields,
    uncited_pages,
)
from docvl.pipeline.tasks.specs import TaskSpec
from docvl.schemas import check_invariants, conform_output, validate_output


def owned_pages(pass_: Pass) -> dict[int, tuple[int, int]]:
    """Per window of a one-document pass, the pages whose records it contributes: all its pages,
    but a page it shares with the next segment belongs to that segment (which sees what follows)."""
    windows = sorted(pass_.windows, key=lambda w: w.first_page)
    owned = {}
    for k, w in enumerate(windows):
        last = w.last_page
        if k + 1 < len(windows) and windows[k + 1].first_page <= w.last_page:
            last = windows[k + 1].first_page - 1
        owned[w.index] = (w.first_page, last)
    return owned


def partials(
    spec: TaskSpec, results: Sequence[WindowResult], owned: dict[int, tuple[int, int]] | None = None
) -> list[tuple[str, BaseModel]]:
    out: list[tuple[str, BaseModel]] = []
    for wr in results:
        for tr in wr.tasks:
            if tr.task != spec.name or tr.data is None:
                continue
            data = tr.data
            if owned is not None and wr.window.index in owned:
                first, last = owned[wr.window.index]
                data = keep_pages(spec.model, data, range(first, last + 1))
            label = f"pages {wr.window.first_page}-{wr.window.last_page}"
            out.append((label, spec.model.model_validate(data)))
    return out


def extraction(
    prepared: Prepared,
    pass_: Pass,
    spec: TaskSpec,
    results: Sequence[WindowResult],
    backend: ModelBackend,
    settings: Settings,
    usage: Usage,
    errors: list[ErrorRecord],
) -> ExtractionOutput | None:
    """The pass's extraction from its window ``results`` (None when no window has one); the usage
    and errors of the re-asks are added to ``usage`` and ``errors``."""
    owned = owned_pages(pass_) if not pass_.shared else None
    parts = partials(spec, results, owned)
    if not parts:
        return None
    doc = prepared.loaded(pass_)[0]
    data, conflicts = merge_partials(spec.model, [v for _, v in parts])
    expected = {
        p.page: expected_rows(p.text, first_page=p.page == 1) if p.has_text_layer else None
        for p in doc.pages
    }
    done = complete(
        backend,
        spec,
        settings,
        data,
        sorted(owned_pages(pass_).values()),
        lambda pages: subset_content(
            prepared, pass_, 0, [p for p in pages if p <= doc.page_count], settings
        ),
        expected,
        lambda content, instruction: (
            settings.context_window - prepared.counter.prompt(content, instruction)
        ),
    )
    usage.add(done.usage)
    errors.extend(done.errors)
    data, conflicts = done.data, conflicts + done.conflicts
    check = Completeness(reasked_pages=done.reasked_pages, added_records=done.added_records)
    check.uncited_pages = uncited_pages(data, 1, doc.page_count)
    lists = record_list_fields(spec.model)
    if lists:
        check.pages = page_completeness(spec.model, data, expected)
    grounding = ground(data, doc.pages)
    replies = [*window_replies(spec, results, owned), *done.replies]
    confidences = record_confidences(replies, lists)
    if confidences:
        add_confidence(grounding, data, confidences)
    return ExtractionOutput(
        schema_name=spec.schema_name,
        schema_version=spec.schema_version,
        data=data,
        grounding=grounding,
        conflicts=conflicts,
        completeness=check,
    )


def contract(
    spec: TaskSpec, extraction: ExtractionOutput, warnings: list[str]
) -> list[ErrorRecord]:
    """Check the merged extraction against the user's own contract (their JSON Schema as written,
    or the pydantic model): a record is ``ok`` only when it passes. The schema's numeric
    invariants (line items sum to the subtotal, ...) become warnings with their values."""
    extraction.data = conform_output(spec.model, extraction.data)
    warnings.extend(
        f"{spec.schema_name}: {message}"
        for message in check_invariants(spec.model, extraction.data)
    )
    problems = validate_output(spec.model, extraction.data)
    if not problems:
        return []
    shown = "; ".join(problems[:5]) + (
        f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    )
    message = f"the merged extraction does not validate against {spec.schema_name}: {shown}"
    return [ErrorRecord(code=ValidationFailed.code, message=message)]
