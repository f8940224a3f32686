"""Long documents: map -> reduce -> check.

* **map**: every window gives a typed partial result in the task's own schema
  (``analyze.run_window``).
* **reduce** (:func:`merge_partials`, deterministic, for extraction): list fields are concatenated
  in page order and de-duplicated by key (the item model's ``dedup_keys``, else all its
  non-provenance fields; keys normalised: case, whitespace, punctuation, numbers to 2 decimals). A
  key repeated inside ONE window is kept as often as it occurs there (two identical coffees on a
  receipt stay two); repeats from other windows merge into it (pages united, a missing quote
  filled). Scalars: the first non-null value in page order; other distinct values are reported as
  :class:`~docvl.pipeline.result.Conflict`. Nested objects merge field by field; "sourced" objects
  (with a ``value`` field) count as one scalar.
* **reduce** (:func:`reduce_with_model`, for summaries and answers): the partial results as a
  text-only prompt, one model call (hierarchical above :data:`REDUCE_FANIN` partials) -> one result
  of the schema.
* **check**: :mod:`docvl.pipeline.tasks.completeness`.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Container, Mapping, Sequence
from dataclasses import replace
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from docvl.pipeline.errors import DocvlError
from docvl.pipeline.model.base import ModelBackend
from docvl.pipeline.plan.prompt import Part, TextPart
from docvl.pipeline.result import Conflict
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.grounding import cited_pages, iter_records
from docvl.pipeline.tasks.repair import TaskResult, repair
from docvl.pipeline.tasks.specs import JSON_ONLY, TaskSpec, prompt_schema

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
