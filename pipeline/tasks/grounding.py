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

Matching runs in stages, strictest first, each over every cited page before the next
(:data:`STAGES`): ``exact`` (a substring of the raw text layer), ``whitespace`` (runs of whitespace
collapsed to one space on both sides), ``casefold`` (NFKC, case folded, quotes/dashes unified,
hyphenation at line ends joined; then also punctuation-insensitive), ``fuzzy`` (a word window of the
normalised page with ``difflib`` similarity >= :data:`FUZZY_RATIO`; of the windows overlapping the
first one found, the most similar), so OCR-ish noise and hyphenation do not flag true quotes. The
first occurrence wins at every stage; a page is looked at only once it is cited, and its views are
built then, once per :class:`PageText`.

Boxes: each normalised view of a page keeps, per character, the raw text span it came from, so a
match maps back to raw offsets; ``PageInfo.words`` gives every word's raw offsets and box, and the
box of a match is the union of the boxes of the words it overlaps.
"""

from __future__ import annotations

import bisect
import difflib
import re
import unicodedata
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.ingest.document import PageInfo
from pipeline.result import Grounding, GroundingItem, MatchStage

Checked = Literal["quote", "value", "none"]
Box = tuple[float, float, float, float]

FUZZY_RATIO = 0.85
#: Evidence shorter than this (after normalisation) is too weak to check: "1", "a".
MIN_EVIDENCE_CHARS = 2
#: Matching stages, strictest first.
STAGES: tuple[MatchStage, ...] = ("exact", "whitespace", "casefold", "fuzzy")
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
_HYPHEN_BREAK = re.compile(r"(?<=\w)-\s*\n\s*(?=\w)")
_SPACE = re.compile(r"\s+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
#: Letters and digits: ``\w`` is ``str.isalnum()`` plus the underscore.
_ALNUM = re.compile(r"[^\W_]+")


# --- normalised views that remember where each character came from --------------------------------


@dataclass(frozen=True)
class Mapped:
    """A view of a raw text: character ``i`` of ``text`` comes from ``raw[starts[i]:ends[i]]``
    (offsets in ``array("I")``: 8 bytes a character)."""

    text: str
    starts: array[int]
    ends: array[int]

    @classmethod
    def identity(cls, raw: str) -> Mapped:
        return cls(raw, array("I", range(len(raw))), array("I", range(1, len(raw) + 1)))

    def raw_span(self, first: int, last: int) -> tuple[int, int]:
        """Raw offsets of ``text[first:last]`` (non-empty)."""
        return self.starts[first], self.ends[last - 1]


class _Builder:
    """Builds a :class:`Mapped` piece by piece."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.starts: array[int] = array("I")
        self.ends: array[int] = array("I")

    def copy(self, m: Mapped, first: int, last: int, text: str | None = None) -> None:
        """Characters ``first..last - 1`` of ``m`` (as ``text`` when given: same length)."""
        self.parts.append(m.text[first:last] if text is None else text)
        self.starts.extend(m.starts[first:last])
        self.ends.extend(m.ends[first:last])

    def add(self, text: str, start: int, end: int) -> None:
        """``text``, every character of it from raw ``start..end``."""
        self.parts.append(text)
        self.starts.extend([start] * len(text))
        self.ends.extend([end] * len(text))

    def build(self) -> Mapped:
        return Mapped("".join(self.parts), self.starts, self.ends)


def _nfkc(raw: str) -> Mapped:
    """NFKC and the quote/dash table, cluster by cluster (a base character with its combining
    marks), so every output character knows its source. ASCII stretches are copied as they are."""
    m = Mapped.identity(raw)
    if raw.isascii():
        return m
    out = _Builder()
    pos = 0
    for run in _NON_ASCII.finditer(raw):
        # Start one character early: an ASCII base may carry the run's combining marks.
        first, last = max(run.start() - 1, pos), run.end()
        out.copy(m, pos, first)
        i = first
        while i < last:
            j = i + 1
            while j < last and unicodedata.combining(raw[j]):
                j += 1
            out.add(unicodedata.normalize("NFKC", raw[i:j]).translate(_TRANSLATE), i, j)
            i = j
        pos = last
    out.copy(m, pos, len(raw))
    return out.build()


def _dehyphenate(m: Mapped) -> Mapped:
    """Join words hyphenated at a line end: ``migra-\ntion`` -> ``migration``."""
    cuts = [match.span() for match in _HYPHEN_BREAK.finditer(m.text)]
    if not cuts:
        return m
    out = _Builder()
    pos = 0
    for first, last in cuts:
        out.copy(m, pos, first)
        pos = last
    out.copy(m, pos, len(m.text))
    return out.build()


def _collapse(m: Mapped) -> Mapped:
    """Whitespace runs become one space (spanning the run); leading/trailing whitespace goes."""
    out = _Builder()
    pos, size = 0, len(m.text)
    for run in _SPACE.finditer(m.text):
        first, last = run.span()
        out.copy(m, pos, first)
        if first > 0 and last < size:
            out.add(" ", m.starts[first], m.ends[last - 1])
        pos = last
    out.copy(m, pos, size)
    return out.build()


def _casefold(m: Mapped) -> Mapped:
    if m.text.isascii():
        return Mapped(m.text.lower(), m.starts, m.ends)
    out = _Builder()
    pos = 0
    for run in _NON_ASCII.finditer(m.text):
        first, last = run.span()
        out.copy(m, pos, first, m.text[pos:first].lower())
        for i in range(first, last):
            out.add(m.text[i].casefold(), m.starts[i], m.ends[i])
        pos = last
    out.copy(m, pos, len(m.text), m.text[pos:].lower())
    return out.build()


def _alnum(m: Mapped) -> Mapped:
    """Letters and digits only (punctuation-insensitive matching)."""
    out = _Builder()
    for run in _ALNUM.finditer(m.text):
        out.copy(m, *run.span())
    return out.build()


def collapse_whitespace(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def normalized(raw: str) -> Mapped:
    """NFKC, quotes/dashes unified, hyphenation joined, whitespace collapsed, case folded."""
    return _casefold(_collapse(_dehyphenate(_nfkc(raw))))


def normalize(text: str) -> str:
    return normalized(text).text


def compact(text: str) -> str:
    return "".join(_ALNUM.findall(normalize(text)))


# --- locating evidence in one page ----------------------------------------------------------------


class Needle:
    """One evidence string in the forms each stage looks for."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.spaced = collapse_whitespace(raw)
        self.norm = normalize(raw)
        self.tight = "".join(_ALNUM.findall(self.norm))


class Layer:
    """A page's text layer, its views (built on first use) and its words."""

    def __init__(self, info: PageInfo) -> None:
        self.info = info
        self.raw = info.text
        self._views: dict[str, Mapped] = {}
        self._word_spans: tuple[Sequence[int], Sequence[int]] | None = None
        self._norm_words: tuple[list[int], list[int]] | None = None

    def view(self, name: str) -> Mapped:
        if name not in self._views:
            if name == "whitespace":
                self._views[name] = _collapse(Mapped.identity(self.raw))
            elif name == "norm":
                self._views[name] = normalized(self.raw)
            else:  # "tight"
                self._views[name] = _alnum(self.view("norm"))
        return self._views[name]

    def find(self, needle: Needle, stage: MatchStage) -> tuple[int, int] | None:
        """Raw offsets of the first (fuzzy: best) match of ``needle`` at ``stage``."""
        if stage == "exact":
            at = self.raw.find(needle.raw) if needle.raw else -1
            return (at, at + len(needle.raw)) if at >= 0 else None
        if stage == "whitespace":
            return _find_in(self.view("whitespace"), needle.spaced)
        if stage == "casefold":
            return _find_in(self.view("norm"), needle.norm) or _find_in(
                self.view("tight"), needle.tight
            )
        span = _fuzzy_span(self.view("norm").text, self._word_offsets(), needle.norm)
        return self.view("norm").raw_span(*span) if span else None

    def box(self, span: tuple[int, int]) -> Box | None:
        """Union of the boxes of the words overlapping raw ``span`` (None without words)."""
        words = self.info.words
        if not len(words):
            return None
        if self._word_spans is None:
            self._word_spans = (words.starts(), words.ends())
        starts, ends = self._word_spans
        first = bisect.bisect_right(ends, span[0])
        last = bisect.bisect_left(starts, span[1])
        return words.box(first, last)

    def _word_offsets(self) -> tuple[list[int], list[int]]:
        if self._norm_words is None:
            starts: list[int] = []
            ends: list[int] = []
            pos = 0
            for word in self.view("norm").text.split(" "):
                starts.append(pos)
                ends.append(pos + len(word))
                pos += len(word) + 1
            self._norm_words = (starts, ends)
        return self._norm_words


def _find_in(view: Mapped, needle: str) -> tuple[int, int] | None:
    at = view.text.find(needle) if needle else -1
    return view.raw_span(at, at + len(needle)) if at >= 0 else None


def _fuzzy_span(
    page: str, offsets: tuple[list[int], list[int]], needle: str
) -> tuple[int, int] | None:
    """The window of ``size - 1 .. size + 1`` words of ``page`` (normalised) most similar to
    ``needle``, among those overlapping the first window whose similarity is at least
    :data:`FUZZY_RATIO` (needles of 3 or more words), as offsets in ``page``."""
    starts, ends = offsets
    size = len(needle.split(" "))
    if size < 3 or len(starts) < size - 1:
        return None
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(needle)
    best, where, until = FUZZY_RATIO, None, len(starts)
    for first in range(len(starts)):
        if first > until:
            break  # past the windows overlapping the first match: the best of them wins
        for width in (size, size - 1, size + 1):
            last = first + width
            if last > len(starts):
                continue
            matcher.set_seq1(page[starts[first] : ends[last - 1]])
            if matcher.real_quick_ratio() < best or matcher.quick_ratio() < best:
                continue
            ratio = matcher.ratio()
            if ratio > best or (ratio == best and where is None):
                best, where = ratio, (starts[first], ends[last - 1])
                until = min(until, first + size)
    return where


def text_contains(norm_page: str, compact_page: str, evidence: str) -> bool:
    """Whether ``evidence`` is in a page given as its normalised and compact forms (no boxes)."""
    needle = Needle(evidence)
    if not needle.norm:
        return False
    if needle.norm in norm_page or (needle.tight and needle.tight in compact_page):
        return True
    layer = Layer(PageInfo(0, 0.0, 0.0, norm_page, True))
    return layer.find(needle, "fuzzy") is not None


@dataclass(frozen=True)
class Hit:
    page: int
    stage: MatchStage
    span: tuple[int, int]


class PageText:
    """A document's pages for grounding; each page's views are computed once, when first cited."""

    def __init__(self, pages: Sequence[PageInfo]) -> None:
        self.pages = {p.page: p for p in pages}
        self._layers: dict[int, Layer] = {}

    def has_layer(self, page: int) -> bool:
        info = self.pages.get(page)
        return info is not None and info.has_text_layer and bool(info.text.strip())

    def layer(self, page: int) -> Layer:
        if page not in self._layers:
            self._layers[page] = Layer(self.pages[page])
        return self._layers[page]

    def locate(self, pages: Sequence[int], forms: Sequence[str]) -> Hit | None:
        """The strictest stage at which one of ``forms`` is on one of ``pages`` (earlier pages
        first)."""
        needles = [Needle(f) for f in forms]
        for stage in STAGES:
            for page in pages:
                layer = self.layer(page)
                for needle in needles:
                    span = layer.find(needle, stage)
                    if span is not None:
                        return Hit(page, stage, span)
        return None

    def contains(self, page: int, evidence: str) -> bool:
        return self.locate([page], [evidence]) is not None

    def box(self, hit: Hit) -> Box | None:
        return self.layer(hit.page).box(hit.span)


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
