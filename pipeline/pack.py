"""Packing pages into context windows: contiguous, in reading order, as few windows as possible.

Items are pages in order across one or more documents. A window costs its fixed framing, a header for
each document it touches and its pages. Any sub-range of a window that fits also fits (fewer headers,
fewer pages, fewer images), so filling each window greedily is optimal: no contiguous split has fewer
windows (exchange argument; property-tested in tests/test_pack.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.errors import DocumentTooLarge


@dataclass(frozen=True)
class PackItem:
    doc: int
    page: int
    tokens: int


@dataclass(frozen=True)
class Span:
    doc: int
    first_page: int
    last_page: int


@dataclass(frozen=True)
class PackedWindow:
    spans: tuple[Span, ...]
    tokens: int

    @property
    def images(self) -> int:
        return sum(s.last_page - s.first_page + 1 for s in self.spans)


def pack(
    items: Sequence[PackItem],
    *,
    budget: int,
    framing: int,
    header_tokens: Sequence[int],
    max_images: int,
) -> list[PackedWindow]:
    """Split ``items`` into the fewest contiguous windows of at most ``budget`` tokens each.

    ``framing`` is paid once per window, ``header_tokens[doc]`` once per document per window.
    Raises DocumentTooLarge when a single page cannot fit an empty window.
    """
    windows: list[PackedWindow] = []
    spans: list[Span] = []
    total = framing
    for item in items:
        new_doc = not spans or spans[-1].doc != item.doc
        cost = item.tokens + (header_tokens[item.doc] if new_doc else 0)
        images = sum(s.last_page - s.first_page + 1 for s in spans)
        if spans and (total + cost > budget or images + 1 > max_images):
            windows.append(PackedWindow(tuple(spans), total))
            spans, total, new_doc = [], framing, True
            cost = item.tokens + header_tokens[item.doc]
        if total + cost > budget:
            raise DocumentTooLarge(
                f"page {item.page} needs {cost} tokens, more than the {budget - framing} a window has "
                "for content; lower --max-pixels or the text per page",
                page=item.page,
            )
        if new_doc:
            spans.append(Span(item.doc, item.page, item.page))
        else:
            last = spans[-1]
            spans[-1] = Span(last.doc, last.first_page, item.page)
        total += cost
    if spans:
        windows.append(PackedWindow(tuple(spans), total))
    return windows
