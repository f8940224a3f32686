"""Locating one piece of evidence on a page's text layer, and the box of the words it covers.

Matching runs in stages, strictest first, each over every cited page before the next
(:data:`STAGES`): ``exact`` (a substring of the raw text layer), ``whitespace`` (runs of whitespace
collapsed to one space on both sides), ``casefold`` (NFKC, case folded, quotes/dashes unified,
hyphenation at line ends joined; then also punctuation-insensitive), ``fuzzy`` (a word window of the
normalised page with ``difflib`` similarity >= :data:`FUZZY_RATIO`; of the windows overlapping the
first one found, the most similar), so OCR-ish noise and hyphenation do not flag true quotes. The
first occurrence wins at every stage; a page is looked at only once it is cited, and its views are
built then, once per :class:`PageText`.

Boxes: each normalised view of a page (:mod:`docvl.pipeline.tasks.charmap`) maps back to raw
offsets; ``PageInfo.words`` gives every word's raw offsets and box, and the box of a match is the
union of the boxes of the words it overlaps.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from docvl.pipeline.ingest.document import PageInfo
from docvl.pipeline.result import MatchStage
from docvl.pipeline.tasks.charmap import (
    ALNUM,
    Mapped,
    alnum,
    collapse,
    collapse_whitespace,
    normalize,
    normalized,
)

Box = tuple[float, float, float, float]

FUZZY_RATIO = 0.85
#: Matching stages, strictest first.
STAGES: tuple[MatchStage, ...] = ("exact", "whitespace", "casefold", "fuzzy")


class Needle:
    """One evidence string in the forms each stage looks for."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.spaced = collapse_whitespace(raw)
        self.norm = normalize(raw)
        self.tight = "".join(ALNUM.findall(self.norm))


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
                self._views[name] = collapse(Mapped.identity(self.raw))
            elif name == "norm":
                self._views[name] = normalized(self.raw)
            else:  # "tight"
                self._views[name] = alnum(self.view("norm"))
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
