"""Records cut by a page break: found, completed and merged once (pipeline/tasks/pagebreak.py)."""

from __future__ import annotations

from typing import Any

from docvl.pipeline.tasks.pagebreak import completes, cut_pages, join, missing_fields
from docvl.schemas import PurchaseOrder


def line(sku: str, description: str, qty: float | None, page: int) -> dict[str, Any]:
    amount = None if qty is None else qty * 2.0
    return {
        "sku": sku,
        "description": description,
        "quantity": qty,
        "unit_price": None if qty is None else 2.0,
        "amount": amount,
        "page": page,
        "quote": f"{sku} | {description}",
    }


FRAGMENT = line("SKU-3", "Steel hex bolt", None, 1)
WHOLE = line("SKU-3", "Steel hex bolt zinc plated with spare nuts", 4, 1)


def test_missing_fields_are_those_most_siblings_fill() -> None:
    siblings = [line("SKU-1", "a", 1, 1), line("SKU-2", "b", 2, 1)]
    assert missing_fields(FRAGMENT, siblings) == ["quantity", "unit_price", "amount"]
    assert missing_fields(WHOLE, siblings) == []
    assert missing_fields(FRAGMENT, []) == []  # nothing to compare with
    # A field most records leave empty is not missing.
    bare = [line("SKU-1", "a", None, 1), line("SKU-2", "b", None, 1)]
    assert missing_fields(FRAGMENT, bare) == []


def test_a_whole_record_completes_its_fragment_only() -> None:
    assert completes(WHOLE, FRAGMENT)
    assert not completes(FRAGMENT, WHOLE) and not completes(FRAGMENT, FRAGMENT)
    assert not completes({**WHOLE, "page": 2}, FRAGMENT)  # starts on another page
    assert not completes({**WHOLE, "sku": "SKU-4"}, FRAGMENT)  # another value
    assert not completes({**WHOLE, "description": "Brass hex bolt zinc"}, FRAGMENT)


def test_cut_pages_are_pages_whose_last_record_looks_cut() -> None:
    data = {"lines": [line("SKU-1", "a", 1, 1), line("SKU-2", "b", 2, 1), FRAGMENT]}
    assert cut_pages(PurchaseOrder, data) == [1]
    # Only a page's last record can run onto the next page.
    early = {"lines": [FRAGMENT, line("SKU-1", "a", 1, 1), line("SKU-2", "b", 2, 1)]}
    assert cut_pages(PurchaseOrder, early) == []
    # A fragment another record already completes is not cut.
    assert cut_pages(PurchaseOrder, {"lines": [*data["lines"], WHOLE]}) == []


def test_join_replaces_the_fragment_in_place_and_keeps_everything_else_once() -> None:
    before = [line("SKU-1", "a", 1, 1), FRAGMENT, line("SKU-9", "z", 9, 2)]
    reply = {"lines": [line("SKU-1", "a", 1, 1), WHOLE, line("SKU-5", "new", 5, 1)]}
    data, joined = join(PurchaseOrder, {"po_number": None, "lines": before}, reply, 1)
    assert joined == 1
    assert [x["sku"] for x in data["lines"]] == ["SKU-1", "SKU-3", "SKU-9", "SKU-5"]
    assert data["lines"][1] == WHOLE
    # A reply without the whole record leaves the fragment (nothing is lost).
    same, joined = join(PurchaseOrder, {"lines": before}, {"lines": [before[0]]}, 1)
    assert joined == 0 and same["lines"] == before
