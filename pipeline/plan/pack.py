"""Packing pages into context windows: contiguous, in reading order, as few windows as possible.

Items are pages in order across one or more documents. A window costs its fixed framing, a header
for each document it touches and its pages. Any sub-range of a window that fits also fits (fewer
headers, fewer pages, fewer images), so filling each window greedily is optimal: no contiguous split
has fewer windows (exchange argument; property-tested in tests/test_pack.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from docvl.pipeline.errors import DocumentTooLarge
from docvl.pipeline.result import Span, Window


@dataclass(frozen=True)
class PackItem:
    doc: int
    page: int
    tokens: int
    #: Reply tokens this page is expected to need (output-aware segments; 0 otherwise).
    output: int = 0


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
        gap = bool(spans) and not new_doc and spans[-1].last_page + 1 != item.page
        if spans and (gap or total + cost > budget or images + 1 > max_images):
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


def segment(
    items: Sequence[PackItem],
    *,
    budget: int,
    framing: int,
    header_tokens: Sequence[int],
    max_images: int,
    output_budget: int,
) -> list[Window]:
    """Page segments of one document whose input fits ``budget`` AND whose expected reply (the sum
    of the pages' ``output``) fits ``output_budget``; neighbouring segments share one page.

    The shared page gives each segment the context around its boundary (a row that starts at the
    bottom of a page and ends on the next); the merge keeps each page's records from one segment
    only (see ``owned_pages`` in :mod:`docvl.pipeline.tasks.reduce`). A page whose reply alone
    exceeds ``output_budget`` gets a segment of its own (the runner splits or re-asks it with a
    larger budget). Windows carry their expected reply in ``output_tokens``.
    """
    windows: list[Window] = []
    start = 0
    while start < len(items):
        end = start
        tokens = framing + header_tokens[items[start].doc] + items[start].tokens
        output = items[start].output
        if tokens > budget:
            raise DocumentTooLarge(
                f"page {items[start].page} needs {tokens - framing} tokens, "
                f"more than the {budget - framing} a window has for content",
                page=items[start].page,
            )
        while end + 1 < len(items):
            nxt = items[end + 1]
            fits = (
                tokens + nxt.tokens <= budget
                and output + nxt.output <= output_budget
                and end + 2 - start <= max_images
            )
            if not fits or nxt.doc != items[end].doc or nxt.page != items[end].page + 1:
                break
            end += 1
            tokens += nxt.tokens
            output += nxt.output
        first, last = items[start], items[end]
        span = Span(doc=first.doc, first_page=first.page, last_page=last.page)
        window = _window(len(windows), [span], tokens)
        windows.append(window.model_copy(update={"output_tokens": output}))
        if end + 1 >= len(items):
            break
        # Overlap one page, but always advance: a one-page segment shares nothing, nor does a
        # segment that ends before a gap in the page selection.
        contiguous = items[end + 1].page == items[end].page + 1
        start = end if end > start and contiguous else end + 1
    return windows
