"""Extraction schemas for commercial documents: invoices, purchase orders, receipts."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from docvl.schemas.base import (
    Amount,
    Page,
    Quantity,
    Quote,
    SourcedAmount,
    SourcedDate,
    SourcedText,
    Strict,
)
from docvl.schemas.invariants import Invariant, LineProduct, LinesSum, TotalOf


class Party(Strict):
    """A company or person named on the document."""

    name: SourcedText | None = None
    address: SourcedText | None = None
    tax_id: SourcedText | None = None


class LineItem(Strict):
    """One billed line. ``amount`` is the line total as printed."""

    dedup_keys: ClassVar[tuple[str, ...]] = ("description", "amount")

    description: str
    quantity: Quantity | None = None
    unit_price: Amount | None = None
    amount: Amount | None = None
    page: Page
    quote: Quote = None


class Invoice(Strict):
    """An invoice: parties, identifiers, dates, line items and totals."""

    invariants: ClassVar[tuple[Invariant, ...]] = (
        LineProduct("line_items"),
        LinesSum("line_items", total="subtotal"),
        TotalOf(("subtotal", "tax"), total="total"),
    )

    vendor: Party | None = None
    customer: Party | None = None
    invoice_number: SourcedText | None = None
    issue_date: SourcedDate | None = None
    due_date: SourcedDate | None = None
    currency: SourcedText | None = Field(None, description="ISO 4217 code when known, e.g. EUR")
    line_items: list[LineItem] = Field(default_factory=list)
    subtotal: SourcedAmount | None = None
    tax: SourcedAmount | None = None
    total: SourcedAmount | None = None


class OrderLine(Strict):
    dedup_keys: ClassVar[tuple[str, ...]] = ("sku", "description", "quantity")

    sku: str | None = None
    description: str
    quantity: Quantity | None = None
    unit_price: Amount | None = None
    amount: Amount | None = None
    page: Page
    quote: Quote = None


class PurchaseOrder(Strict):
    """A purchase order: buyer, supplier, ordered lines, delivery terms and totals."""

    invariants: ClassVar[tuple[Invariant, ...]] = (
        LineProduct("lines"),
        LinesSum("lines", total="total"),
    )

    po_number: SourcedText | None = None
    buyer: Party | None = None
    supplier: Party | None = None
    order_date: SourcedDate | None = None
    delivery_date: SourcedDate | None = None
    delivery_address: SourcedText | None = None
    payment_terms: SourcedText | None = None
    currency: SourcedText | None = None
    lines: list[OrderLine] = Field(default_factory=list)
    total: SourcedAmount | None = None


class ReceiptItem(Strict):
    dedup_keys: ClassVar[tuple[str, ...]] = ("description", "amount")

    description: str
    quantity: Quantity | None = None
    amount: Amount | None = None
    page: Page
    quote: Quote = None


class Receipt(Strict):
    """A till or card receipt."""

    #: Till receipts usually print prices with tax included: the total may equal subtotal + tip.
    invariants: ClassVar[tuple[Invariant, ...]] = (
        LinesSum("items", total="subtotal"),
        TotalOf(("subtotal", "tax"), total="total", optional=("tip",), included=("tax",)),
    )

    merchant: SourcedText | None = None
    date: SourcedDate | None = None
    items: list[ReceiptItem] = Field(default_factory=list)
    currency: SourcedText | None = None
    subtotal: SourcedAmount | None = None
    tax: SourcedAmount | None = None
    tip: SourcedAmount | None = None
    total: SourcedAmount | None = None
    payment_method: SourcedText | None = None
