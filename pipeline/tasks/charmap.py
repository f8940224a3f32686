"""Normalised views of a text that remember where each character came from.

A :class:`Mapped` view keeps, per character, the raw text span it came from, so a match found in a
normalised view (NFKC, quotes/dashes unified, hyphenation at line ends joined, whitespace collapsed,
case folded; then also letters and digits only) maps back to raw offsets, and from there to the
boxes of the words (:mod:`docvl.pipeline.tasks.locate`).
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from dataclasses import dataclass

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
ALNUM = re.compile(r"[^\W_]+")


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


def collapse(m: Mapped) -> Mapped:
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


def alnum(m: Mapped) -> Mapped:
    """Letters and digits only (punctuation-insensitive matching)."""
    out = _Builder()
    for run in ALNUM.finditer(m.text):
        out.copy(m, *run.span())
    return out.build()


def collapse_whitespace(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def normalized(raw: str) -> Mapped:
    """NFKC, quotes/dashes unified, hyphenation joined, whitespace collapsed, case folded."""
    return _casefold(collapse(_dehyphenate(_nfkc(raw))))


def normalize(text: str) -> str:
    return normalized(text).text


def compact(text: str) -> str:
    return "".join(ALNUM.findall(normalize(text)))
