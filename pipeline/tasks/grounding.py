"""Provenance checks: does the page a record cites actually show what the record says?

A *record* is any object in the extracted data that cites ``page`` or ``pages`` (line items, sourced
scalars, form fields, answer quotes...). For each record:

* its evidence is its ``quote`` (or ``text`` for answer quotes); without one, its string values
  (numbers when it has no strings, matched in the usual printed forms: ``1234.5``, ``1,234.50``,
  ``1.234,50``);
* ``grounded``: the evidence is found on one of the cited pages' text layers;
* ``ungrounded``: the cited pages have a text layer and the evidence is not on it, or a cited page
  does not exist, or the record cites no page at all;
* ``unverifiable``: none of the cited pages has a text layer (scans, image slides).

Matching is normalised (NFKC, case folded, quotes/dashes unified, hyphenation at line ends joined,
whitespace collapsed), then punctuation-insensitive, then fuzzy (a word window of the page with
``difflib`` similarity >= :data:`FUZZY_RATIO`), so OCR-ish noise and hyphenation do not flag true
quotes.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from pipeline.ingest.document import PageInfo
from pipeline.result import Grounding, GroundingItem, GroundingStatus

Checked = Literal["quote", "value", "none"]

FUZZY_RATIO = 0.85
#: Evidence shorter than this (after normalisation) is too weak to check: "1", "a".
MIN_EVIDENCE_CHARS = 2
_PROVENANCE_KEYS = {"page", "pages", "quote", "document"}
_EVIDENCE_KEYS = ("quote", "text")

_TRANSLATE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u00ad": None,
        "\u00a0": " ",
    }
)
_HYPHEN_BREAK = re.compile(r"(\w)-\s*\n\s*(\w)")
_SPACE = re.compile(r"\s+")
_NON_ALNUM = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_TRANSLATE)
    text = _HYPHEN_BREAK.sub(r"\1\2", text)
    return _SPACE.sub(" ", text).strip().casefold()


def compact(text: str) -> str:
    return _NON_ALNUM.sub("", normalize(text))


class PageText:
    """Normalised text layers of a document's pages, computed once."""

    def __init__(self, pages: Sequence[PageInfo]) -> None:
        self.pages = {p.page: p for p in pages}
        self._norm: dict[int, str] = {}
        self._compact: dict[int, str] = {}

    def has_layer(self, page: int) -> bool:
        info = self.pages.get(page)
        return info is not None and info.has_text_layer and bool(info.text.strip())

    def contains(self, page: int, evidence: str) -> bool:
        if page not in self._norm:
            text = self.pages[page].text
            self._norm[page] = normalize(text)
            self._compact[page] = compact(text)
        return text_contains(self._norm[page], self._compact[page], evidence)


def text_contains(norm_page: str, compact_page: str, evidence: str) -> bool:
    needle = normalize(evidence)
    if not needle:
        return False
    if needle in norm_page:
        return True
    tight = compact(evidence)
    if tight and tight in compact_page:
        return True
    return _fuzzy(norm_page, needle)


def _fuzzy(page: str, needle: str) -> bool:
    words = page.split(" ")
    size = len(needle.split(" "))
    if size < 3 or len(words) < size - 1:
        return False
    best = 0.0
    for width in {max(1, size - 1), size, size + 1}:
        for start in range(0, max(1, len(words) - width + 1)):
            window = " ".join(words[start : start + width])
            matcher = difflib.SequenceMatcher(None, window, needle, autojunk=False)
            if matcher.real_quick_ratio() < FUZZY_RATIO or matcher.quick_ratio() < FUZZY_RATIO:
                continue
            best = max(best, matcher.ratio())
            if best >= FUZZY_RATIO:
                return True
    return False


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
            status="unverifiable",
            checked=checked,
            detail="no text layer on the cited page(s)",
        )
    if not evidence:
        return GroundingItem(
            path=path,
            pages=pages,
            status="unverifiable",
            checked="none",
            detail="nothing to compare",
        )
    found = all(
        any(texts.contains(p, form) for p in layered for form in forms) for forms in evidence
    )
    status: GroundingStatus = "grounded" if found else "ungrounded"
    detail = None if found else f"{checked} not found on page(s) {layered}"
    return GroundingItem(path=path, pages=pages, status=status, checked=checked, detail=detail)


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
