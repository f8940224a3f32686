"""Completeness you can count: per page, the records that cite it against what the page holds.

* :func:`expected_rows`: the table-like lines of a page's text layer (3 or more numbers on a line,
  2 of them money-like), what a complete extraction returns rows for;
* :func:`page_completeness`: per page, ``complete``, ``short`` (fewer records than table-like
  lines) or ``uncited``;
* :func:`complete`: pages that look incomplete are shown to the model again (each with the page
  after it, so a row that continues there comes back whole) and what comes back is merged in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel

from docvl.pipeline.errors import DocvlError, ErrorRecord, ReplyTooLong
from docvl.pipeline.model.base import ModelBackend
from docvl.pipeline.plan.prompt import Part
from docvl.pipeline.result import Conflict, PageCompleteness, Usage
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.confidence import ScoredReply
from docvl.pipeline.tasks.grounding import cited_pages
from docvl.pipeline.tasks.pagebreak import cut_pages, join
from docvl.pipeline.tasks.reduce import (
    all_cited_pages,
    count_records,
    keep_pages,
    merge_partials,
    record_list_fields,
)
from docvl.pipeline.tasks.repair import TaskResult, repair
from docvl.pipeline.tasks.specs import TaskSpec, only_pages


@dataclass
class CompletenessResult:
    data: dict[str, Any]
    conflicts: list[Conflict] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    reasked_pages: list[int] = field(default_factory=list)
    added_records: int = 0
    errors: list[ErrorRecord] = field(default_factory=list)
    #: Every accepted re-ask reply with its confidences and the pages whose records it adds.
    replies: list[ScoredReply] = field(default_factory=list)


#: A number standing alone: not part of a word, a code (L0017), a date (2026-01-05) or a range.
_NUMBER_TOKEN = re.compile(r"(?<![\w.\-/])[-+(]?[$€£]?\d[\d,.]*\)?%?(?![\w\-/])")
#: Two decimals: how prices and amounts print (1,234.50 or 1.234,50).
_MONEY = re.compile(r"\d[.,]\d\d$")
#: A text line with at least this many numbers, two of them money-like (a quantity, a price, an
#: amount), looks like a table row. Tax IDs, phone numbers and dates do not.
ROW_NUMBERS = 3
ROW_MONEY = 2


def _row_like(line: str) -> bool:
    numbers = [n.rstrip(")%") for n in _NUMBER_TOKEN.findall(line)]
    return len(numbers) >= ROW_NUMBERS and sum(bool(_MONEY.search(n)) for n in numbers) >= ROW_MONEY


def expected_rows(text: str, *, first_page: bool = True) -> int:
    """Table-like lines of a page's text layer: what a complete extraction returns rows for.

    On a page after the first, the first table-like line may end a row that began on the page
    before (and belongs to it), so it is not counted.
    """
    rows = sum(1 for line in text.splitlines() if _row_like(line))
    return rows if first_page else max(0, rows - 1)


def records_per_page(model: type[BaseModel], data: Mapping[str, Any]) -> dict[int, int]:
    """How many records of ``model``'s record lists cite each page."""
    counts: dict[int, int] = {}
    for name in record_list_fields(model):
        for item in data.get(name) or []:
            if isinstance(item, Mapping):
                for page in cited_pages(item):
                    counts[page] = counts.get(page, 0) + 1
    return counts


def page_completeness(
    model: type[BaseModel], data: Mapping[str, Any], expected: Mapping[int, int | None]
) -> list[PageCompleteness]:
    """Per page (the keys of ``expected``): records citing it against its table-like lines."""
    counts, cited = records_per_page(model, data), all_cited_pages(data)
    out = []
    for page, rows in sorted(expected.items()):
        records = counts.get(page, 0)
        status: Literal["complete", "short", "uncited"] = "complete"
        if rows is not None and records < rows:
            status = "short"
        elif page not in cited:
            status = "uncited"
        out.append(PageCompleteness(page=page, records=records, expected_rows=rows, status=status))
    return out


def complete(
    backend: ModelBackend,
    spec: TaskSpec,
    settings: Settings,
    data: Mapping[str, Any],
    ranges: Sequence[tuple[int, int]],
    build_content: Callable[[list[int]], Sequence[Part]],
    expected: Mapping[int, int | None],
    room: Callable[[Sequence[Part], str], int] | None = None,
) -> CompletenessResult:
    """Re-ask about pages that look incomplete, one call per window range (a subset of a window
    always fits): pages no record cites (when there are several windows) and pages with fewer
    records than table-like lines (``expected``, see :func:`expected_rows`).

    ``build_content(pages)`` returns the prompt content for those pages (rendered images
    attached; pages past the end are left out). Each re-asked page is shown with the page after
    it, and only the re-asked pages' records are kept, so a row that continues on the next page
    comes back whole. Records that come back are merged into ``data`` with
    :func:`merge_partials` (dedup applies). A re-ask whose reply is too long is asked again page
    by page, and a page alone with a larger budget, up to ``room(content, instruction)`` (the
    output tokens the context leaves; without it, never more than the spec's).

    Then each page whose last record looks cut by the page break after it (a prompt that ended
    there; :func:`~docvl.pipeline.tasks.pagebreak.cut_pages`) is asked again with the next page, and
    the fragment is replaced by the whole record (:func:`~docvl.pipeline.tasks.pagebreak.join`):
    once, in its place.
    """
    merged: dict[str, Any] = dict(data)
    result = CompletenessResult(data=merged)
    before = count_records(merged)
    last_page = max(expected, default=0)
    ask = _Asker(backend, settings, build_content, room)
    for first, last in ranges:
        status = page_completeness(
            spec.model, merged, {p: expected.get(p) for p in range(first, last + 1)}
        )
        missing = [
            s.page
            for s in status
            if s.status == "short" or (s.status == "uncited" and len(ranges) > 1)
        ]
        if not missing:
            continue
        result.reasked_pages.extend(missing)
        for pages in _reask_groups(spec, missing, last_page, result, ask):
            merged, conflicts = merge_partials(spec.model, [merged, pages])
            result.conflicts.extend(conflicts)
    for page in cut_pages(spec.model, merged):
        if page >= last_page:
            continue
        result.reasked_pages.append(page)
        for value in _reask_groups(spec, [page], last_page, result, ask):
            merged, _joined = join(spec.model, merged, value.model_dump(mode="json"), page)
    result.reasked_pages = sorted(set(result.reasked_pages))
    result.data = merged
    result.added_records = count_records(merged) - before
    return result


@dataclass(frozen=True)
class _Asker:
    backend: ModelBackend
    settings: Settings
    build_content: Callable[[list[int]], Sequence[Part]]
    #: Output tokens the context leaves after a prompt (content, instruction); None: no larger
    #: budget than the spec's is ever asked for.
    room: Callable[[Sequence[Part], str], int] | None = None


def _reask_groups(
    spec: TaskSpec, pages: list[int], last_page: int, result: CompletenessResult, ask: _Asker
) -> list[BaseModel]:
    """Values for ``pages``: one call, or one per page when the reply for all was too long (and a
    single page's too-long reply asked again with 4 times the budget, up to what the context
    leaves, as for a window). Each page is shown with the page after it (rows that continue
    there) and only the asked pages' records are asked for and kept."""
    shown = sorted({*pages, *(p + 1 for p in pages if p < last_page)})
    asked = only_pages(spec, pages, shown)
    content = ask.build_content(shown)
    room = ask.room(content, asked.instruction) if ask.room is not None else 0
    while True:
        state = TaskResult(task=spec.name)
        try:
            value = repair(ask.backend, content, asked, ask.settings, state=state)
            break
        except ReplyTooLong as exc:
            result.usage.add(state.usage)
            if len(pages) > 1:
                return [v for p in pages for v in _reask_groups(spec, [p], last_page, result, ask)]
            if asked.max_new_tokens >= room:
                result.errors.append(exc.record())
                return []
            asked = replace(asked, max_new_tokens=min(asked.max_new_tokens * 4, room))
        except DocvlError as exc:
            result.usage.add(state.usage)
            result.errors.append(exc.record())
            return []
    result.usage.add(state.usage)
    data = value.model_dump(mode="json")
    result.replies.append(ScoredReply(data, state.confidence, frozenset(pages)))
    return [spec.model.model_validate(keep_pages(spec.model, data, pages))]
