"""The printed format of the synthetic documents, their words, and the PDF writer.

The printed format is plain and regular, one record per text line, so that a parser (the test
double :class:`docvl.pipeline.dev.double.TextLayerModel`) can read it back from the text layer:

* header fields: ``Label: value`` (``PO number: PO-2024-0815``, ``Total: 123.45``); the labels are
  :data:`LABELS` (schema name -> label -> field path);
* order / invoice lines: ``L0017 | SKU-0017 | Steel hex bolt zinc plated | qty 3 | 4.50 | 13.50``
  (invoices have no SKU column: ``L0003 | Consulting hours | qty 12 | 145.00 | 1740.00``);
* a line split over a page break: ``L0020 | SKU-0020 | Heavy duty shelving`` at the bottom of page
  N, ``unit with spare fixings | qty 2 | 85.00 | 170.00`` at the top of page N+1 (after the
  running header);
* tables: ``Table 1: caption``, then the column names and one row per line, cells joined by
  `` | ``.

Amounts have two decimals and no thousands separator; dates are ISO 8601. Pages are A4; the font
shrinks (never below :data:`MIN_FONTSIZE`) until the longest line and the fullest page fit.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pymupdf

A4_WIDTH, A4_HEIGHT = 595.0, 842.0
MARGIN = 36.0
#: Baseline-to-baseline distance as a multiple of the font size.
LEADING = 1.25
MAX_FONTSIZE = 9.0
MIN_FONTSIZE = 3.5
FONT = "helv"
CENT = Decimal("0.01")

# --- the printed format (what TextLayerModel reads back) ------------------------------------------

#: A whole order / invoice line.
LINE_RE = re.compile(
    r"^L(?P<line>\d+) \| (?:(?P<sku>SKU-\d+) \| )?(?P<description>[^|]+?) \| qty (?P<quantity>\d+)"
    r" \| (?P<unit_price>\d+\.\d{2}) \| (?P<amount>\d+\.\d{2})$"
)
#: The start of a line whose description continues on the next page.
START_RE = re.compile(r"^L(?P<line>\d+) \| (?:(?P<sku>SKU-\d+) \| )?(?P<description>[^|]+)$")
#: The rest of such a line, at the top of the next page.
CONT_RE = re.compile(
    r"^(?P<description>[^|]+?) \| qty (?P<quantity>\d+) \| (?P<unit_price>\d+\.\d{2})"
    r" \| (?P<amount>\d+\.\d{2})$"
)
LABEL_RE = re.compile(r"^(?P<label>[A-Z][A-Za-z ]*?): (?P<value>.+)$")
CAPTION_RE = re.compile(r"^Table (?P<table>\d+): (?P<caption>.+)$")
CELL_SEP = " | "

#: Header labels per schema: label -> (field path, whether the value is an amount).
LABELS: dict[str, dict[str, tuple[tuple[str, ...], bool]]] = {
    "purchase_order": {
        "PO number": (("po_number",), False),
        "Buyer": (("buyer", "name"), False),
        "Buyer address": (("buyer", "address"), False),
        "Buyer tax ID": (("buyer", "tax_id"), False),
        "Supplier": (("supplier", "name"), False),
        "Supplier address": (("supplier", "address"), False),
        "Supplier tax ID": (("supplier", "tax_id"), False),
        "Order date": (("order_date",), False),
        "Delivery date": (("delivery_date",), False),
        "Delivery address": (("delivery_address",), False),
        "Payment terms": (("payment_terms",), False),
        "Currency": (("currency",), False),
        "Total": (("total",), True),
    },
    "invoice": {
        "Vendor": (("vendor", "name"), False),
        "Vendor address": (("vendor", "address"), False),
        "Vendor tax ID": (("vendor", "tax_id"), False),
        "Customer": (("customer", "name"), False),
        "Customer address": (("customer", "address"), False),
        "Customer tax ID": (("customer", "tax_id"), False),
        "Invoice number": (("invoice_number",), False),
        "Issue date": (("issue_date",), False),
        "Due date": (("due_date",), False),
        "Currency": (("currency",), False),
        "Subtotal": (("subtotal",), True),
        "Tax": (("tax",), True),
        "Total": (("total",), True),
    },
}
#: The record list each commerce schema's lines go into.
LINE_FIELD = {"purchase_order": "lines", "invoice": "line_items"}

# --- words ---------------------------------------------------------------------------------------

MATERIALS = (
    "Steel",
    "Stainless steel",
    "Brass",
    "Aluminium",
    "Nylon",
    "Copper",
    "Galvanised steel",
    "Rubber",
)
ITEMS = (
    "hex bolt",
    "flat washer",
    "lock nut",
    "cable tie",
    "door hinge",
    "angle bracket",
    "pipe clamp",
    "compression spring",
    "ball bearing",
    "flange gasket",
    "blind rivet",
    "wood screw",
    "anchor plug",
    "shelf support",
)
FINISHES = (
    "zinc plated",
    "heavy duty",
    "for outdoor use",
    "pack of ten",
    "metric thread",
    "black finish",
    "high tensile",
    "food grade",
)
#: Long tails for lines that are split over a page break (so both halves have several words).
EXTRAS = (
    "supplied with mounting kit and spare fixing screws",
    "delivered on returnable pallets with inspection report",
    "packed in labelled boxes of fifty with safety data sheet",
    "with certificate of conformity and batch traceability",
)
SERVICES = (
    "Consulting hours senior engineer",
    "Installation of conveyor sensors",
    "Annual maintenance contract",
    "Replacement drive belts",
    "Calibration of torque tools",
    "Travel expenses flat rate",
    "Training session for operators",
    "Spare parts kit for packaging line",
)


@dataclass(frozen=True)
class Line:
    number: int
    sku: str | None
    description: str
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(CENT)

    def cells(self) -> list[str]:
        head = [f"L{self.number:04d}"] + ([self.sku] if self.sku else [])
        qty = f"qty {self.quantity}"
        return [*head, self.description, qty, money(self.unit_price), money(self.amount)]

    def printed(self) -> str:
        return CELL_SEP.join(self.cells())


def money(value: Decimal) -> str:
    return f"{value.quantize(CENT):.2f}"


# --- writing --------------------------------------------------------------------------------------


def write_pdf(path: Path | str, pages: Sequence[Sequence[str]], title: str) -> Path:
    """Write ``pages`` (each a list of text lines, top to bottom; "" leaves a blank line) as an A4
    PDF in Helvetica, each line one line of the text layer (no wrapping, no reordering). The
    font size is the largest (at most :data:`MAX_FONTSIZE`) at which every page and line fit."""
    path = Path(path)
    if not pages:
        raise ValueError("a PDF needs at least one page")
    rows = max(1, *(len(lines) for lines in pages))
    longest = max(
        [1.0]
        + [pymupdf.get_text_length(line, fontname=FONT, fontsize=1.0) for p in pages for line in p]
    )
    usable_w, usable_h = A4_WIDTH - 2 * MARGIN, A4_HEIGHT - 2 * MARGIN
    fontsize = min(MAX_FONTSIZE, usable_h / (1 + (rows - 1) * LEADING), usable_w / longest)
    if fontsize < MIN_FONTSIZE:
        raise ValueError(
            f"{rows} lines per page or a {longest:.0f}-unit line do not fit an A4 page at "
            f"{MIN_FONTSIZE} pt or more; use more pages or shorter lines"
        )
    doc = pymupdf.open()  # type: ignore[no-untyped-call]
    for lines in pages:
        page = doc.new_page(width=A4_WIDTH, height=A4_HEIGHT)
        if lines:
            page.insert_text(
                (MARGIN, MARGIN + fontsize),
                list(lines),
                fontsize=fontsize,
                fontname=FONT,
                lineheight=LEADING,
            )
    doc.set_metadata(
        {
            "title": title,
            "author": "docvl synth",
            "creator": "pipeline/dev/synth.py",
            "producer": "PyMuPDF",
            "creationDate": "D:20240301090000Z",
            "modDate": "D:20240301090000Z",
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path, garbage=4, deflate=True, no_new_id=True)  # type: ignore[no-untyped-call]
    doc.close()  # type: ignore[no-untyped-call]
    return path


def price(rng: random.Random, low: int = 25, high: int = 25_000) -> Decimal:
    return (Decimal(rng.randint(low, high)) / 100).quantize(CENT)
