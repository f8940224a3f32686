"""Provenance checks: does the page a record cites show what the record says, and where?

A *record* is any object in the extracted data that cites ``page`` or ``pages`` (line items, sourced
scalars, form fields, answer quotes...). For each record:

* its evidence is its ``quote`` (or ``text`` for answer quotes); without one, its string values
  (numbers when it has no strings, matched in the usual printed forms: ``1234.5``, ``1,234.50``,
  ``1.234,50``). Several values are several pieces: each must be found;
* ``grounded``: every piece is found on a cited page's text layer. The item tells the ``page`` (the
  first piece's), the ``bbox`` around the matched words (of the pieces found on that page; None
  when the matched text has no word boxes: form field values, slide text from python-pptx) and the
  ``match`` stage (the loosest any piece needed);
* ``page_only``: the cited pages exist but the evidence cannot be checked: none of them has a
  usable text layer (scans, image slides, images), or the record carries no evidence (no quote, no
  value: only its page can be checked), or the evidence is not on the cited pages that have a text
  layer while another cited page has none (it may be on that one);
* ``ungrounded``: every cited page has a text layer and the evidence is not on them, or a cited page
  does not exist, or the record cites no page at all.


Where a piece of evidence is on a page, at which matching stage and with which box, is
:mod:`docvl.pipeline.tasks.locate`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from docvl.pipeline.ingest.document import PageInfo
from docvl.pipeline.result import Grounding, GroundingItem
from docvl.pipeline.tasks.charmap import normalize
from docvl.pipeline.tasks.locate import STAGES, Box, PageText

Checked = Literal["quote", "value", "none"]

#: Evidence shorter than this (after normalisation) is too weak to check: "1", "a".
MIN_EVIDENCE_CHARS = 2
_PROVENANCE_KEYS = {"page", "pages", "quote", "document"}
_EVIDENCE_KEYS = ("quote", "text")


# --- records --------------------------------------------------------------------------------------


def number_forms(value: float) -> list[str]:
    """Printed forms of a number: 1234.5 -> 1234.5, 1234.50, 1,234.50, 1.234,50, 1 234,50."""
    forms = {repr(value), f"{value:g}"}
    if float(value).is_integer():
        forms.add(str(int(value)))
        forms.add(f"{int(value):,}")
    two = f"{value:,.2f}"
    forms.update(
        {
            two,
            two.replace(",", ""),
            two.replace(",", "_").replace(".", ",").replace("_", "."),
            two.replace(",", " ").replace(".", ","),
        }
    )
    return sorted(forms)


def iter_records(data: Any, path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every object in ``data`` that has a ``page`` or ``pages`` key, with its path."""
    if isinstance(data, Mapping):
        if "page" in data or "pages" in data:
            yield path or "(root)", data
        for key, value in data.items():
            if key not in _PROVENANCE_KEYS:
                yield from iter_records(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from iter_records(value, f"{path}[{i}]")


def cited_pages(record: Mapping[str, Any]) -> list[int]:
    pages: list[int] = []
    if isinstance(record.get("page"), int):
        pages.append(record["page"])
    if isinstance(record.get("pages"), list):
        pages.extend(p for p in record["pages"] if isinstance(p, int))
    return sorted(set(pages))


def _is_empty(record: Mapping[str, Any]) -> bool:
    """A sourced scalar with no value (``{"value": null, "page": null}``): nothing to ground."""
    return "value" in record and record.get("value") is None


def _strings(record: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in record.items():
        if key in _PROVENANCE_KEYS:
            continue
        values = value if isinstance(value, list) else [value]
        out.extend(
            v for v in values if isinstance(v, str) and len(normalize(v)) >= MIN_EVIDENCE_CHARS
        )
    return out


def _evidence(record: Mapping[str, Any]) -> tuple[Checked, list[list[str]]]:
    """What to look for: a list of pieces, each a list of alternative forms (any one may match)."""
    for key in _EVIDENCE_KEYS:
        value = record.get(key)
        if isinstance(value, str) and len(normalize(value)) >= MIN_EVIDENCE_CHARS:
            return "quote", [[value]]
    strings = _strings(record)
    if strings:
        return "value", [[s] for s in strings]
    numbers = [
        v
        for k, v in record.items()
        if k not in _PROVENANCE_KEYS and isinstance(v, int | float) and not isinstance(v, bool)
    ]
    if numbers:
        return "value", [number_forms(float(n)) for n in numbers]
    return "none", []


def _union(boxes: Sequence[Box | None]) -> tuple[float, float, float, float] | None:
    found = [b for b in boxes if b is not None]
    if not found:
        return None
    return (
        round(min(b[0] for b in found), 2),
        round(min(b[1] for b in found), 2),
        round(max(b[2] for b in found), 2),
        round(max(b[3] for b in found), 2),
    )


def ground_record(record: Mapping[str, Any], texts: PageText, path: str = "") -> GroundingItem:
    pages = cited_pages(record)
    checked, evidence = _evidence(record)
    if not pages:
        return GroundingItem(
            path=path, status="ungrounded", checked=checked, detail="cites no page"
        )
    missing = [p for p in pages if p not in texts.pages]
    if missing:
        return GroundingItem(
            path=path,
            pages=pages,
            status="ungrounded",
            checked=checked,
            detail=f"cites page(s) the document does not have: {missing}",
        )
    layered = [p for p in pages if texts.has_layer(p)]
    if not layered:
        return GroundingItem(
            path=path,
            pages=pages,
            status="page_only",
            checked=checked,
            detail="no text layer on the cited page(s)",
        )
    if not evidence:
        return GroundingItem(
            path=path, pages=pages, status="page_only", checked="none", detail="nothing to compare"
        )
    hits = [texts.locate(layered, forms) for forms in evidence]
    found = [h for h in hits if h is not None]
    if len(found) == len(hits):
        page = found[0].page
        bbox = _union([texts.box(h) for h in found if h.page == page])
        return GroundingItem(
            path=path,
            pages=pages,
            status="grounded",
            checked=checked,
            page=page,
            bbox=bbox,
            match=max((h.stage for h in found), key=STAGES.index),
            detail=None if bbox else "found in text that has no word boxes",
        )
    bare = [p for p in pages if p not in layered]
    detail = f"{checked} not found on page(s) {layered}"
    if bare:
        return GroundingItem(
            path=path,
            pages=pages,
            status="page_only",
            checked=checked,
            detail=f"{detail}; page(s) {bare} have no text layer",
        )
    return GroundingItem(
        path=path, pages=pages, status="ungrounded", checked=checked, detail=detail
    )


def ground(
    data: Any, pages: Sequence[PageInfo] | Callable[[Mapping[str, Any]], PageText]
) -> Grounding:
    """Ground every record of ``data`` (a dumped model) against the pages' text layers.

    ``pages`` is one document's pages, or a function choosing the pages for a record (cross-document
    answers pick the document named by a quote's ``document`` field).
    """
    chooser: Callable[[Mapping[str, Any]], PageText]
    if callable(pages):
        chooser = pages
    else:
        single = PageText(pages)
        chooser = lambda _record: single  # noqa: E731
    report = Grounding()
    for path, record in iter_records(data):
        if _is_empty(record):
            continue
        item = ground_record(record, chooser(record), path)
        report.items.append(item)
        setattr(report, item.status, getattr(report, item.status) + 1)
    return report
