"""Shared helper of the merge and completeness tests: one invoice line as a reply holds it."""

from __future__ import annotations


def item(desc: str, amount: float, page: int, quote: str | None = None) -> dict[str, object]:
    """An invoice line of quantity 1 citing ``page`` (and ``quote``), as a reply gives it."""
    return {
        "description": desc,
        "quantity": 1,
        "unit_price": amount,
        "amount": amount,
        "page": page,
        "quote": quote,
    }
