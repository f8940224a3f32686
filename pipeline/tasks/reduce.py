"""Long documents: map -> reduce -> check.

* **map**: every window gives a typed partial result in the task's own schema
  (``analyze.run_window``).
* **reduce** (:func:`merge_partials`, deterministic, for extraction): list fields are concatenated
  in page order and de-duplicated by key (the item model's ``dedup_keys``, else all its
  non-provenance fields; keys normalised: case, whitespace, punctuation, numbers to 2 decimals). A
  key repeated inside ONE window is kept as often as it occurs there (two identical coffees on a
  receipt stay two); repeats from other windows merge into it (pages united, a missing quote
  filled). Scalars: the first non-null value in page order; other distinct values are reported as
  :class:`~pipeline.result.Conflict`. Nested objects merge field by field; "sourced" objects (with a
  ``value`` field) count as one scalar.
* **reduce** (:func:`reduce_with_model`, for summaries and answers): the partial results as a
  text-only prompt, one model call (hierarchical above :data:`REDUCE_FANIN` partials) -> one result
  of the schema.
* **check** (:func:`complete`): pages of each window that no record cites are shown to the model
  again, alone (the caller builds that content: rendered pages), and what comes back is merged in.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from pipeline.errors import DocvlError, ErrorRecord, ReplyTooLong
from pipeline.model.base import ModelBackend
from pipeline.plan.prompt import Part, TextPart
from pipeline.result import Conflict, PageCompleteness, Usage
from pipeline.settings import Settings
from pipeline.tasks.grounding import cited_pages, iter_records
from pipeline.tasks.repair import TaskResult, repair
from pipeline.tasks.specs import JSON_ONLY, TaskSpec, prompt_schema

REDUCE_FANIN = 16
_PROVENANCE = ("page", "pages", "quote", "document")
_PUNCT = re.compile(r"[\W_]+")


# --- deterministic merge --------------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` down to X (unions of several types stay unions)."""
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _model_type(annotation: Any) -> type[BaseModel] | None:
    inner = _unwrap(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def norm_key(value: Any) -> Any:
    if isinstance(value, str):
        return _PUNCT.sub(" ", value.casefold()).strip()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return round(float(value), 2)
    if isinstance(value, Mapping):
        return tuple(sorted((k, norm_key(v)) for k, v in value.items() if k not in _PROVENANCE))
    if isinstance(value, list):
        return tuple(norm_key(v) for v in value)
    return repr(value)


def _is_null(value: Any) -> bool:
    return (
        value is None
        or value == ""
        or value == []
        or (isinstance(value, Mapping) and "value" in value and value.get("value") in (None, ""))
    )


def record_list_fields(model: type[BaseModel]) -> list[str]:
    """Top-level fields of ``model`` that hold lists of records (objects): what can grow without
    bound with the document (line items, rows, fields) and so needs output-aware segments."""
    out = []
    for name, info in model.model_fields.items():
        annotation = _unwrap(info.annotation)
        if get_origin(annotation) is list:
            args = get_args(annotation)
            if args and _model_type(args[0]) is not None:
                out.append(name)
    return out


def keep_pages(
    model: type[BaseModel], data: Mapping[str, Any], pages: Container[int]
) -> dict[str, Any]:
    """``data`` without the records of its record lists that cite a page not in ``pages``: with
    overlapping segments (and context pages in a re-ask) each page's records come from one call
    only, the one that sees the page with what follows it."""
    out = dict(data)
    for name in record_list_fields(model):
        items = out.get(name)
        if isinstance(items, list):
            out[name] = [
                item
                for item in items
                if not (isinstance(item, Mapping) and isinstance(item.get("page"), int))
                or item["page"] in pages
            ]
    return out


def merge_partials(
    model: type[BaseModel], partials: Sequence[Mapping[str, Any] | BaseModel]
) -> tuple[dict[str, Any], list[Conflict]]:
    """Merge partial results (in page order) into one dict of ``model``'s shape, plus the conflicts.

    The result is not re-validated: merged lists may be longer than one reply's ``max_length``.
    """
    dicts = [p.model_dump(mode="json") if isinstance(p, BaseModel) else dict(p) for p in partials]
    conflicts: list[Conflict] = []
    return _merge_object(model, dicts, "", conflicts), conflicts


def _merge_object(
    model: type[BaseModel] | None, objs: list[dict[str, Any]], path: str, conflicts: list[Conflict]
) -> dict[str, Any]:
    names = list(model.model_fields) if model is not None else []
    for obj in objs:
        names.extend(k for k in obj if k not in names)
    out: dict[str, Any] = {}
    for name in names:
        values = [o[name] for o in objs if name in o]
        info = model.model_fields.get(name) if model is not None else None
        out[name] = _merge_values(
            info.annotation if info else Any, values, f"{path}.{name}" if path else name, conflicts
        )
    return out


def _merge_values(annotation: Any, values: list[Any], path: str, conflicts: list[Conflict]) -> Any:
    inner = _unwrap(annotation)
    if get_origin(inner) is list or (inner is Any and any(isinstance(v, list) for v in values)):
        args = get_args(inner)
        return _merge_lists(args[0] if args else Any, [v for v in values if isinstance(v, list)])
    sub = _model_type(inner)
    present = [v for v in values if isinstance(v, dict)]
    if sub is not None and present and "value" not in sub.model_fields:
        return _merge_object(sub, present, path, conflicts)
    return _first_non_null(values, path, conflicts)


def _first_non_null(values: list[Any], path: str, conflicts: list[Conflict]) -> Any:
    filled = [v for v in values if not _is_null(v)]
    if not filled:
        return values[0] if values else None
    kept = filled[0]
    distinct: dict[Any, Any] = {}
    for v in filled:
        distinct.setdefault(
            norm_key(v.get("value") if isinstance(v, Mapping) and "value" in v else v), v
        )
    if len(distinct) > 1:
        shown = [
            v.get("value") if isinstance(v, Mapping) and "value" in v else v
            for v in distinct.values()
        ]
        conflicts.append(Conflict(path=path, values=shown, kept=shown[0]))
    return kept


def record_key(item: Any, keys: Sequence[str]) -> Any:
    if isinstance(item, Mapping):
        names = list(keys) or [k for k in item if k not in _PROVENANCE]
        return tuple(norm_key(item.get(k)) for k in names)
    return norm_key(item)


def _merge_lists(item_annotation: Any, lists: list[list[Any]]) -> list[Any]:
    sub = _model_type(item_annotation)
    keys: Sequence[str] = getattr(sub, "dedup_keys", ()) if sub is not None else ()
    out: list[Any] = []
    slots: dict[Any, list[int]] = {}
    for items in lists:
        seen_here: dict[Any, int] = {}
        for item in items:
            key = record_key(item, keys)
            nth = seen_here.get(key, 0)
            seen_here[key] = nth + 1
            existing = slots.setdefault(key, [])
            if nth < len(existing):
                _absorb(out[existing[nth]], item)
            else:
                existing.append(len(out))
                out.append(dict(item) if isinstance(item, Mapping) else item)
    return out


def _absorb(kept: Any, dup: Any) -> None:
    """Fold a duplicate's provenance into the record kept."""
    if not (isinstance(kept, dict) and isinstance(dup, Mapping)):
        return
    if isinstance(kept.get("pages"), list) and isinstance(dup.get("pages"), list):
        kept["pages"] = sorted({*kept["pages"], *dup["pages"]})
    if not kept.get("quote") and dup.get("quote"):
        kept["quote"] = dup["quote"]
    for name, value in dup.items():
        if kept.get(name) is None and value is not None:
            kept[name] = value


def count_records(data: Any) -> int:
    return sum(1 for _ in iter_records(data))


def all_cited_pages(data: Any) -> set[int]:
    return {p for _path, record in iter_records(data) for p in cited_pages(record)}


def uncited_pages(data: Any, first_page: int, last_page: int) -> list[int]:
    cited = all_cited_pages(data)
    return [p for p in range(first_page, last_page + 1) if p not in cited]


# --- model-based reduce ---------------------------------------------------------------------------


def reduce_instruction(spec: TaskSpec) -> str:
    what = {"summary": "summaries", "ask": "answers to the question"}.get(spec.name, "results")
    goal = {
        "summary": (
            "Merge them into one summary of the whole document: one title, one summary covering "
            "every part in proportion, and the most important key points (at most 12) with their "
            "pages."
        ),
        "ask": (
            "Combine them into one answer to the question over all parts. Keep the pages and "
            'quotes that support the answer; "found" is true if any part found the answer.'
        ),
    }.get(spec.name, "Merge them into one result of the same schema.")
    question = f"Question: {' '.join(spec.question.split())}\n" if spec.question else ""
    return (
        f"Task: the JSON objects above are partial {what}, each from a consecutive part of the "
        f"same document(s), in page order. {goal} Keep page numbers as they are; do not invent "
        "content.\n" + question + JSON_ONLY + "\n" + prompt_schema(spec.model) + "\n"
    )


def partial_parts(partials: Sequence[tuple[str, BaseModel]]) -> list[Part]:
    """The text-only content of a reduce call: one ``<partial i: label>`` block per partial
    result."""
    parts: list[Part] = []
    for i, (label, value) in enumerate(partials, start=1):
        body = json.dumps(value.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))
        parts.append(TextPart(f"<partial {i}: {label}>\n{body}\n"))
    return parts


def reduce_with_model(
    backend: ModelBackend,
    spec: TaskSpec,
    partials: Sequence[tuple[str, BaseModel]],
    settings: Settings,
) -> TaskResult:
    """One validated result from several partial ones (labels like ``pages 1-40``).

    More than :data:`REDUCE_FANIN` partials are reduced in groups first. The result's usage covers
    every reduce call; on failure ``result.error`` is set and ``result.data`` is None.
    """
    reduce_spec = replace(spec, instruction=reduce_instruction(spec))
    total = TaskResult(task=spec.name)
    level = list(partials)
    while len(level) > 1:
        nxt: list[tuple[str, BaseModel]] = []
        for start in range(0, len(level), REDUCE_FANIN):
            group = level[start : start + REDUCE_FANIN]
            if len(group) == 1:
                nxt.append(group[0])
                continue
            step = TaskResult(task=spec.name)
            try:
                value = repair(backend, partial_parts(group), reduce_spec, settings, state=step)
            except DocvlError as exc:
                step.error = exc.record()
            total.usage.add(step.usage)
            total.attempts += step.attempts
            _sum_timings(total.timings, step.timings)
            if step.error is not None:
                total.raw, total.error = step.raw, step.error
                return total
            label = f"{group[0][0].split('-')[0]}-{group[-1][0].rsplit('-', 1)[-1]}"
            nxt.append((label, value))
        level = nxt
    if level:
        total.accept(level[0][1])
    return total


def _sum_timings(into: dict[str, float], more: Mapping[str, float]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0.0) + v


# --- completeness check ---------------------------------------------------------------------------


@dataclass
class CompletenessResult:
    data: dict[str, Any]
    conflicts: list[Conflict] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    reasked_pages: list[int] = field(default_factory=list)
    added_records: int = 0
    errors: list[ErrorRecord] = field(default_factory=list)


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
) -> CompletenessResult:
    """Re-ask about pages that look incomplete, one call per window range (a subset of a window
    always fits): pages no record cites (when there are several windows) and pages with fewer
    records than table-like lines (``expected``, see :func:`expected_rows`).

    ``build_content(pages)`` returns the prompt content for those pages (rendered images
    attached; pages past the end are left out). Each re-asked page is shown with the page after
    it, and only the re-asked pages' records are kept, so a row that continues on the next page
    comes back whole. Records that come back are merged into ``data`` with
    :func:`merge_partials` (dedup applies). A re-ask whose reply is too long is asked again page
    by page.
    """
    merged: dict[str, Any] = dict(data)
    result = CompletenessResult(data=merged)
    before = count_records(merged)
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
        for pages in _reask_groups(backend, spec, settings, build_content, missing, result):
            merged, conflicts = merge_partials(spec.model, [merged, pages])
            result.conflicts.extend(conflicts)
    result.data = merged
    result.added_records = count_records(merged) - before
    return result


def _reask_groups(
    backend: ModelBackend,
    spec: TaskSpec,
    settings: Settings,
    build_content: Callable[[list[int]], Sequence[Part]],
    pages: list[int],
    result: CompletenessResult,
) -> list[BaseModel]:
    """Values for ``pages``: one call, or one per page when the reply for all was too long."""
    state = TaskResult(task=spec.name)
    shown = sorted({*pages, *(p + 1 for p in pages)})  # what follows a page: rows that continue
    try:
        value = repair(backend, build_content(shown), spec, settings, state=state)
    except ReplyTooLong as exc:
        result.usage.add(state.usage)
        if len(pages) == 1:
            result.errors.append(exc.record())
            return []
        return [
            v
            for p in pages
            for v in _reask_groups(backend, spec, settings, build_content, [p], result)
        ]
    except DocvlError as exc:
        result.usage.add(state.usage)
        result.errors.append(exc.record())
        return []
    result.usage.add(state.usage)
    return [spec.model.model_validate(keep_pages(spec.model, value.model_dump(mode="json"), pages))]
