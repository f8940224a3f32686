"""Ground truth of the synthetic documents: the data a perfect extraction returns, whole or for
some pages only (see :mod:`docvl.pipeline.dev.synth`)."""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from typing import Any

from pydantic import BaseModel, TypeAdapter

from docvl.pipeline.dev.printed import LABELS, LINE_RE, Line


def label_line(label: str, value: str) -> str:
    return f"{label}: {value}"


def sourced(label: str, value: str, page: int, amount: bool = False) -> dict[str, Any]:
    return {
        "value": float(value) if amount else value,
        "page": page,
        "quote": label_line(label, value),
    }


def header_truth(schema: str, fields: Sequence[tuple[str, str]], page: int) -> dict[str, Any]:
    """Nested schema data for ``Label: value`` lines printed on ``page``."""
    out: dict[str, Any] = {}
    for label, value in fields:
        path, amount = LABELS[schema][label]
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = sourced(label, value, page, amount)
    return out


def split_lines(truth: dict[str, Any]) -> list[dict[str, Any]]:
    """The order lines of a truth whose quote is only the start of the printed line (split rows)."""
    return [line for line in truth.get("lines", []) if not LINE_RE.match(line.get("quote") or "")]


def dump_truth(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` validated against ``model`` and dumped (JSON types, every field, nulls included).
    Top-level record lists are validated item by item, so a list bound on the model (one reply's
    ``max_length``, where a schema has one) never rejects a long document's truth: docvl's merged
    results are not bounded either."""
    lists = {k: v for k, v in data.items() if isinstance(v, list)}
    out = model.model_validate({**data, **{k: [] for k in lists}}).model_dump(mode="json")
    for name, items in lists.items():
        annotation = model.model_fields[name].annotation
        adapter: TypeAdapter[Any] = TypeAdapter(list[Any] if annotation is None else annotation)
        out[name] = adapter.dump_python(adapter.validate_python(items), mode="json")
    return out


def truth_on_pages(truth: dict[str, Any], pages: Collection[int]) -> dict[str, Any]:
    """``truth`` restricted to ``pages``: records (objects with an integer ``page``) on other pages
    are dropped from lists and become null elsewhere; an object left with only nulls (a party whose
    fields were all elsewhere) becomes null. What a reader of just those pages can report, except
    for lines split over a page break, which need both pages (see :func:`split_rows`). Returns a
    new object; ``truth`` is not changed."""
    shown = set(pages)

    def walk(node: Any, top: bool = False) -> Any:
        if isinstance(node, dict):
            page = node.get("page")
            if isinstance(page, int) and not isinstance(page, bool):
                return copy.deepcopy(node) if page in shown else None
            out = {k: walk(v) for k, v in node.items()}
            emptied = all(v is None for v in out.values()) and any(
                v is not None for v in node.values()
            )
            return None if emptied and not top else out
        if isinstance(node, list):
            return [w for w in (walk(v) for v in node) if w is not None]
        return node

    result: dict[str, Any] = walk(truth, top=True)
    return result


def line_record(line: Line, page: int, quote: str) -> dict[str, Any]:
    record: dict[str, Any] = {"sku": line.sku} if line.sku else {}
    record.update(
        description=line.description,
        quantity=float(line.quantity),
        unit_price=float(line.unit_price),
        amount=float(line.amount),
        page=page,
        quote=quote,
    )
    return record
