"""Numeric invariants of the built-in schemas (schemas/invariants.py): line sums, line products,
totals; tolerances; messages that name the values."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from docvl.schemas import (
    DocumentSummary,
    Invoice,
    PurchaseOrder,
    Receipt,
    check_invariants,
)
from docvl.schemas.invariants import LineProduct, LinesSum, TotalOf, close, fmt, number


def amount(value: float | None) -> dict[str, Any]:
    return {"value": value, "page": 1, "quote": None}


def invoice(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "line_items": [
            {"description": "Consulting", "quantity": 10, "unit_price": 9.5, "amount": 95.0},
            {"description": "Travel", "quantity": 1, "unit_price": 25.0, "amount": 25.0},
        ],
        "subtotal": amount(120.0),
        "tax": amount(22.8),
        "total": amount(142.8),
    }
    for item in data["line_items"]:
        item["page"] = 1
    data.update(changes)
    return data


def test_a_consistent_invoice_passes() -> None:
    assert check_invariants(Invoice, invoice()) == []
    assert check_invariants(Invoice, Invoice.model_validate(invoice())) == []


def test_line_items_sum_names_the_values() -> None:
    assert check_invariants(Invoice, invoice(subtotal=amount(125.0), total=amount(147.8))) == [
        "line_items sum 120.00 != subtotal 125.00"
    ]


def test_line_product_names_the_line_and_values() -> None:
    data = invoice()
    data["line_items"][1] = {**data["line_items"][1], "quantity": 2, "page": 3}
    assert check_invariants(Invoice, data) == [
        "line_items[1] (page 3): quantity 2.00 × unit_price 25.00 = 50.00 != amount 25.00"
    ]


def test_subtotal_plus_tax_is_the_total() -> None:
    assert check_invariants(Invoice, invoice(total=amount(150.0))) == [
        "subtotal 120.00 + tax 22.80 = 142.80 != total 150.00"
    ]


def test_several_failures_are_all_reported() -> None:
    data = invoice(subtotal=amount(100.0))
    data["line_items"][0]["amount"] = 90.0
    problems = check_invariants(Invoice, data)
    assert problems == [
        "line_items[0] (page 1): quantity 10.00 × unit_price 9.50 = 95.00 != amount 90.00",
        "line_items sum 115.00 != subtotal 100.00",
        "subtotal 100.00 + tax 22.80 = 122.80 != total 142.80",
    ]


def test_rounding_within_tolerance_passes() -> None:
    # a cent of rounding per printed value: 3 × 3.33 = 9.99 printed as 10.00
    data = invoice(
        line_items=[{"description": "x", "quantity": 3, "unit_price": 3.33, "amount": 10.0}],
        subtotal=amount(10.0),
        tax=amount(1.9),
        total=amount(11.9),
    )
    data["line_items"][0]["page"] = 1
    assert check_invariants(Invoice, data) == []
    # relative tolerance for large amounts: 1e-6 of 5 billion is 5000
    assert close(5e9, 5e9 + 4000, 2) and not close(5e9, 5e9 + 6000, 2)
    assert close(100.0, 100.02, 2) and not close(100.0, 100.03, 2)


def test_missing_values_skip_the_check() -> None:
    data = invoice(subtotal=amount(None), tax=None)
    data["line_items"][0]["unit_price"] = None
    assert check_invariants(Invoice, data) == []
    # one line without an amount: its sum cannot be known
    partial = invoice(subtotal=amount(999.0), total=None)
    partial["line_items"][1]["amount"] = None
    assert check_invariants(Invoice, partial) == []
    assert check_invariants(Invoice, {"line_items": []}) == []


def test_purchase_order_lines_and_total() -> None:
    lines = [
        {"sku": "A-1", "description": "Bolt", "quantity": 100, "unit_price": 0.12, "amount": 12.0},
        {"sku": "B-2", "description": "Nut", "quantity": 50, "unit_price": 0.1, "amount": 6.0},
    ]
    for line in lines:
        line["page"] = 2
    assert check_invariants(PurchaseOrder, {"lines": lines, "total": amount(17.0)}) == [
        "lines[1] (page 2): quantity 50.00 × unit_price 0.10 = 5.00 != amount 6.00",
        "lines sum 18.00 != total 17.00",
    ]
    lines[1]["amount"] = 5.0
    assert check_invariants(PurchaseOrder, {"lines": lines, "total": amount(17.0)}) == []


def test_receipt_accepts_tax_included_prices() -> None:
    items = [
        {"description": "Coffee", "amount": 3.2, "page": 1},
        {"description": "Cake", "amount": 4.3, "page": 1},
    ]
    included = {"items": items, "subtotal": amount(7.5), "tax": amount(0.48), "total": amount(7.5)}
    assert check_invariants(Receipt, included) == []
    added = {**included, "total": amount(7.98)}
    assert check_invariants(Receipt, added) == []
    tipped = {**included, "tip": amount(1.0), "total": amount(8.5)}
    assert check_invariants(Receipt, tipped) == []
    wrong = {**included, "tip": amount(1.0), "total": amount(10.0)}
    assert check_invariants(Receipt, wrong) == [
        "subtotal 7.50 + tax 0.48 + tip 1.00 = 8.98 != total 10.00"
    ]
    more = {**included, "subtotal": amount(8.0), "total": amount(8.0)}
    assert check_invariants(Receipt, more) == ["items sum 7.50 != subtotal 8.00"]


def test_models_without_invariants_and_odd_data() -> None:
    class Custom(BaseModel):
        total: float

    assert check_invariants(DocumentSummary, {"summary": "x"}) == []
    assert check_invariants(Custom, {"total": 1.0}) == []
    assert check_invariants(Invoice, {"line_items": "not a list", "total": "n/a"}) == []
    bad_types = invoice(subtotal={"value": True}, tax=amount(22.8))
    assert check_invariants(Invoice, bad_types) == []  # a bool is not a number


@pytest.mark.parametrize(
    "value, text",
    [(120.0, "120.00"), (0.1234, "0.1234"), (-5.5, "-5.50"), (1234567.891, "1234567.891")],
)
def test_number_format(value: float, text: str) -> None:
    assert fmt(value) == text


def test_building_blocks() -> None:
    assert number({"value": 2}) == 2.0 and number(3) == 3.0
    assert number(None) is None and number("4") is None and number(False) is None
    rule = TotalOf(("a", "b"), total="t", optional=("c",))
    assert rule.check({"a": 1, "b": 2, "t": 3}) == []
    assert rule.check({"a": 1, "b": 2, "c": 1, "t": 4}) == []
    assert rule.check({"a": 1, "t": 3}) == []  # a required part is missing
    assert LinesSum("rows", total="t").check({"rows": [{"amount": 1}], "t": 2}) == [
        "rows sum 1.00 != t 2.00"
    ]
    assert (
        LineProduct("rows").check({"rows": [{"quantity": 2, "unit_price": 2, "amount": 4}]}) == []
    )
