"""Packing pages into context windows: contiguous, in reading order, as few windows as possible.

Items are pages in order across one or more documents. A window costs its fixed framing, a header
for each document it touches and its pages. Any sub-range of a window that fits also fits (fewer
headers, fewer pages, fewer images), so filling each window greedily is optimal: no contiguous split
has fewer windows (exchange argument; property-tested in tests/test_pack.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.errors import DocumentTooLarge
from pipeline.result import Span, Window


@dataclass(frozen=True)
class PackItem:
    doc: int
    page: int
    tokens: int


def pack(
    items: Sequence[PackItem],
    *,
    budget: int,
    framing: int,
    header_tokens: Sequence[int],
    max_images: int,
) -> list[Window]:
    """Split ``items`` into the fewest contiguous windows of at most ``budget`` tokens each.

    ``framing`` is paid once per window, ``header_tokens[doc]`` once per document per window. Each
    window's ``input_tokens`` counts one framing; its pages are those of its first span.
    Raises DocumentTooLarge when a single page cannot fit an empty window.
    """
    windows: list[Window] = []
    spans: list[Span] = []
    total = framing
    for item in items:
        new_doc = not spans or spans[-1].doc != item.doc
        cost = item.tokens + (header_tokens[item.doc] if new_doc else 0)
        images = sum(s.last_page - s.first_page + 1 for s in spans)
        if spans and (total + cost > budget or images + 1 > max_images):
            windows.append(_window(len(windows), spans, total))
            spans, total, new_doc = [], framing, True
            cost = item.tokens + header_tokens[item.doc]
        if total + cost > budget:
            raise DocumentTooLarge(
                f"page {item.page} needs {cost} tokens, "
                f"more than the {budget - framing} a window has "
                "for content; lower --max-pixels or the text per page",
                page=item.page,
            )
        if new_doc:
            spans.append(Span(doc=item.doc, first_page=item.page, last_page=item.page))
        else:
            last = spans[-1]
            spans[-1] = Span(doc=last.doc, first_page=last.first_page, last_page=item.page)
        total += cost
    if spans:
        windows.append(_window(len(windows), spans, total))
    return windows


def _window(index: int, spans: list[Span], tokens: int) -> Window:
    return Window(
        index=index,
        first_page=spans[0].first_page,
        last_page=spans[0].last_page,
        input_tokens=tokens,
        images=sum(s.last_page - s.first_page + 1 for s in spans),
        spans=list(spans),
    )
