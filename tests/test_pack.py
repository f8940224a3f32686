"""Packing invariants, property-based: no window over the limit, order kept, window count
minimal."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docvl.pipeline.errors import DocumentTooLarge
from docvl.pipeline.plan.pack import PackItem, pack
from docvl.pipeline.result import Window


def brute_force_min_windows(
    items: list[PackItem], budget: int, framing: int, headers: list[int], max_images: int
) -> int:
    """Fewest contiguous windows by dynamic programming over every split (the reference)."""

    def cost(lo: int, hi: int) -> int:
        chunk = items[lo:hi]
        return (
            framing + sum(i.tokens for i in chunk) + sum(headers[d] for d in {i.doc for i in chunk})
        )

    n = len(items)
    best = [0] + [10**9] * n
    for hi in range(1, n + 1):
        for lo in range(hi):
            if hi - lo <= max_images and cost(lo, hi) <= budget:
                best[hi] = min(best[hi], best[lo] + 1)
    return best[n]


@st.composite
def documents(draw: st.DrawFn) -> tuple[list[PackItem], list[int]]:
    n_docs = draw(st.integers(1, 3))
    items: list[PackItem] = []
    for doc in range(n_docs):
        for page, tokens in enumerate(
            draw(st.lists(st.integers(1, 400), min_size=1, max_size=12)), start=1
        ):
            items.append(PackItem(doc, page, tokens))
    headers = draw(st.lists(st.integers(0, 30), min_size=n_docs, max_size=n_docs))
    return items, headers


def flatten(windows: list[Window]) -> list[tuple[int, int]]:
    return [
        (s.doc, p) for w in windows for s in w.spans for p in range(s.first_page, s.last_page + 1)
    ]


@settings(max_examples=300, deadline=None)
@given(documents(), st.integers(450, 2000), st.integers(0, 40), st.integers(1, 10))
def test_pack_invariants(
    docs: tuple[list[PackItem], list[int]], budget: int, framing: int, max_images: int
) -> None:
    items, headers = docs
    if any(
        framing + headers[i.doc] + i.tokens > budget for i in items
    ):  # a page no window can hold
        with pytest.raises(DocumentTooLarge):
            pack(
                items, budget=budget, framing=framing, header_tokens=headers, max_images=max_images
            )
        return
    windows = pack(
        items, budget=budget, framing=framing, header_tokens=headers, max_images=max_images
    )
    # every page exactly once, in reading order
    assert flatten(windows) == [(i.doc, i.page) for i in items]
    by_key = {(i.doc, i.page): i.tokens for i in items}
    for w in windows:
        assert w.input_tokens <= budget
        assert w.images <= max_images
        expected = (
            framing
            + sum(headers[s.doc] for s in w.spans)
            + sum(by_key[(s.doc, p)] for s in w.spans for p in range(s.first_page, s.last_page + 1))
        )
        assert w.input_tokens == expected
    assert len(windows) == brute_force_min_windows(items, budget, framing, headers, max_images)


def test_single_window_when_everything_fits() -> None:
    items = [PackItem(0, p, 100) for p in range(1, 11)]
    [window] = pack(items, budget=2000, framing=50, header_tokens=[10], max_images=100)
    assert window.input_tokens == 50 + 10 + 1000
    assert window.spans[0].first_page == 1 and window.spans[0].last_page == 10


def test_page_larger_than_window_is_a_typed_error() -> None:
    with pytest.raises(DocumentTooLarge) as info:
        pack(
            [PackItem(0, 1, 10), PackItem(0, 2, 5000)],
            budget=1000,
            framing=10,
            header_tokens=[5],
            max_images=9,
        )
    assert info.value.page == 2
    assert info.value.code == "document_too_large"


def test_image_cap_splits_windows() -> None:
    items = [PackItem(0, p, 1) for p in range(1, 8)]
    windows = pack(items, budget=10**6, framing=0, header_tokens=[0], max_images=3)
    assert [w.images for w in windows] == [3, 3, 1]
