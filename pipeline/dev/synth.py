"""Synthetic documents with known contents, for tests and benchmarks (no model, no network).

Each generator writes a PDF with PyMuPDF and returns its ground truth: the data of the docvl schema
the document is made for, as ``Model.model_validate(x).model_dump(mode="json")`` gives it (every
field present, nulls included; see :func:`dump_truth`), so it compares equal to an envelope's
extraction data. Every
record carries the ``page`` it is printed on (where it starts) and, where the schema has one, its
``quote``: the line as printed. Contents are seeded: the same arguments give the same bytes.

The printed format is plain and regular, one record per text line, so that a parser (the test
double :class:`pipeline.dev.double.TextLayerModel`) can read it back from the text layer:

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

:data:`DOCUMENTS` maps each generator's name to the generator and the schema its truth follows.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymupdf
from pydantic import BaseModel, TypeAdapter

from schemas import Invoice, PurchaseOrder, Tables

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

_MATERIALS = (
    "Steel",
    "Stainless steel",
    "Brass",
    "Aluminium",
    "Nylon",
    "Copper",
    "Galvanised steel",
    "Rubber",
)
_ITEMS = (
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
_FINISHES = (
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
_EXTRAS = (
    "supplied with mounting kit and spare fixing screws",
    "delivered on returnable pallets with inspection report",
    "packed in labelled boxes of fifty with safety data sheet",
    "with certificate of conformity and batch traceability",
)
_SERVICES = (
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
class _Line:
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


def _price(rng: random.Random, low: int = 25, high: int = 25_000) -> Decimal:
    return (Decimal(rng.randint(low, high)) / 100).quantize(CENT)


def _order_lines(rng: random.Random, count: int, *, long_every: int = 0) -> list[_Line]:
    out = []
    for n in range(1, count + 1):
        words = f"{rng.choice(_MATERIALS)} {rng.choice(_ITEMS)} {rng.choice(_FINISHES)}"
        if long_every and n % long_every == 0:
            words += " " + rng.choice(_EXTRAS)
        out.append(_Line(n, f"SKU-{n:04d}", words, rng.randint(1, 50), _price(rng)))
    return out


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


# --- purchase orders ------------------------------------------------------------------------------

_PO_HEADER: tuple[tuple[str, str], ...] = (
    ("PO number", "PO-2024-0815"),
    ("Order date", "2024-03-04"),
    ("Delivery date", "2024-04-15"),
    ("Buyer", "Hollis Engineering Ltd"),
    ("Buyer address", "14 Mill Lane, Leeds LS1 4AB, United Kingdom"),
    ("Buyer tax ID", "GB 123 4567 89"),
    ("Supplier", "Fastline Parts Europe BV"),
    ("Supplier address", "Havenweg 7, 3011 AB Rotterdam, Netherlands"),
    ("Supplier tax ID", "NL 8123.45.678.B01"),
    ("Delivery address", "Hollis Engineering Ltd, Unit 3, Ring Road, Leeds LS12 6AA"),
    ("Payment terms", "Net 30 days"),
    ("Currency", "EUR"),
)
_PO_COLUMNS = "Line | SKU | Description | Quantity | Unit price | Amount"


def _label_line(label: str, value: str) -> str:
    return f"{label}: {value}"


def _sourced(label: str, value: str, page: int, amount: bool = False) -> dict[str, Any]:
    return {
        "value": float(value) if amount else value,
        "page": page,
        "quote": _label_line(label, value),
    }


def _header_truth(schema: str, fields: Sequence[tuple[str, str]], page: int) -> dict[str, Any]:
    """Nested schema data for ``Label: value`` lines printed on ``page``."""
    out: dict[str, Any] = {}
    for label, value in fields:
        path, amount = LABELS[schema][label]
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = _sourced(label, value, page, amount)
    return out


def _order_document(
    path: Path | str, per_page: Sequence[Sequence[_Line]], split_after: Collection[int]
) -> dict[str, Any]:
    """A purchase order whose page ``p`` (1-based) lists ``per_page[p - 1]``; for ``p`` in
    ``split_after`` the last line of page ``p`` is split: its start (line number, SKU, the first
    half of the description) at the bottom of page ``p``, the rest at the top of page ``p + 1``."""
    total_pages = len(per_page)
    if any(not 1 <= p < total_pages or not per_page[p - 1] for p in split_after):
        raise ValueError("a split needs a line on its page and a page after it")
    po_number = _PO_HEADER[0][1]
    printed: list[list[str]] = []
    records: list[dict[str, Any]] = []
    carry: str | None = None
    total = Decimal(0)
    for number, lines in enumerate(per_page, start=1):
        page = ["PURCHASE ORDER"] if number == 1 else [f"Purchase order {po_number}, continued"]
        if number == 1:
            page += [_label_line(label, value) for label, value in _PO_HEADER] + [""]
            page.append(_PO_COLUMNS)
        if carry is not None:
            page.append(carry)
            carry = None
        for i, line in enumerate(lines):
            total += line.amount
            if number in split_after and i == len(lines) - 1:
                words = line.description.split()
                cut = max(1, len(words) // 2)
                head, tail = " ".join(words[:cut]), " ".join(words[cut:])
                if not tail:
                    raise ValueError(f"line {line.number}: a one-word description cannot split")
                quote = CELL_SEP.join([*line.cells()[:2], head])
                carry = CELL_SEP.join([tail, *line.cells()[3:]])
            else:
                quote = line.printed()
            page.append(quote)
            records.append(_line_record(line, number, quote))
        if number == total_pages:
            page += ["", _label_line("Total", money(total))]
        page.append(f"Page {number} of {total_pages}")
        printed.append(page)
    write_pdf(path, printed, f"Purchase order {po_number}")
    truth = _header_truth("purchase_order", _PO_HEADER, 1)
    truth["lines"] = records
    truth["total"] = _sourced("Total", money(total), total_pages, amount=True)
    return dump_truth(PurchaseOrder, truth)


def _line_record(line: _Line, page: int, quote: str) -> dict[str, Any]:
    record: dict[str, Any] = {"sku": line.sku} if line.sku else {}
    record.update(
        description=line.description,
        quantity=float(line.quantity),
        unit_price=float(line.unit_price),
        amount=float(line.amount),
        page=page,
        quote=quote,
    )
    return record


def purchase_order(
    path: Path | str, lines: int = 800, pages: int = 40, *, seed: int = 0
) -> dict[str, Any]:
    """A purchase order (``purchase_order`` schema) of ``pages`` pages and ``lines`` order lines.

    Page 1 carries the header fields (PO number, dates, buyer and supplier with addresses and tax
    IDs, delivery address, payment terms, currency) and the column names; the lines are spread
    evenly (800 over 40: 20 a page), each one text line; the last page ends with the total (the
    sum of the line amounts). Every page has a running header and a ``Page i of n`` footer.
    """
    if pages < 1 or lines < 0:
        raise ValueError("need pages >= 1 and lines >= 0")
    items = _order_lines(random.Random(seed), lines)
    per_page = [items[i * lines // pages : (i + 1) * lines // pages] for i in range(pages)]
    return _order_document(path, per_page, ())


def split_rows(
    path: Path | str, pages: int = 6, lines_per_page: int = 12, *, seed: int = 1
) -> dict[str, Any]:
    """A purchase order (``purchase_order`` schema) in which lines continue across page breaks.

    At every page break after page ``p`` with ``p % 3 != 0`` (6 pages: after pages 1, 2, 4 and
    5; not after 3) the last line of page ``p`` is split: its line number, SKU and the first half of
    its description are at the bottom of page ``p``, the rest of the description, the quantity,
    unit price and amount at the top of page ``p + 1`` (after the running header). Split lines have
    long descriptions. The truth gives such a line the page where it starts and, as quote, the part
    printed there; :func:`split_lines` lists them.
    """
    if pages < 2 or lines_per_page < 1:
        raise ValueError("need pages >= 2 and lines_per_page >= 1")
    rng = random.Random(seed)
    items = _order_lines(rng, pages * lines_per_page)
    splits = {p for p in range(1, pages) if p % 3 != 0}
    per_page: list[list[_Line]] = []
    for p in range(1, pages + 1):
        chunk = items[(p - 1) * lines_per_page : p * lines_per_page]
        if p in splits:
            last = chunk[-1]
            extra = _EXTRAS[p % len(_EXTRAS)]
            chunk[-1] = _Line(
                last.number, last.sku, f"{last.description} {extra}", last.quantity, last.unit_price
            )
        per_page.append(chunk)
    return _order_document(path, per_page, splits)


def split_lines(truth: dict[str, Any]) -> list[dict[str, Any]]:
    """The order lines of a truth whose quote is only the start of the printed line (split rows)."""
    return [line for line in truth.get("lines", []) if not LINE_RE.match(line.get("quote") or "")]


# --- tables ---------------------------------------------------------------------------------------

TABLE_COLUMNS = ("Row", "Part number", "Description", "Qty", "Unit price", "Amount")
TABLE_CAPTION = "Parts price list"


def table_page(path: Path | str, rows: int = 120, *, seed: int = 2) -> dict[str, Any]:
    """One page with one table of ``rows`` rows, in the ``tables`` schema (``Tables``).

    Why ``tables``: its rows are records with ``page`` and ``quote`` and its list allows 1,000 of
    them, so the schema does not cap the reply: 120 rows with their quotes make a reply of about
    6,000 estimated tokens, more than the default 4,096-token output budget. The whole window is
    one page, so docvl cannot cut it into smaller page ranges: this is the document for "a single
    page whose records do not fit one reply". The font shrinks (about 4.8 pt) to fit the page.

    Printed: a title, ``Table 1: Parts price list``, the column names, then one row per line
    (``17 | P-10017 | Brass lock nut zinc plated | 3 | 4.50 | 13.50``).
    """
    if rows < 1:
        raise ValueError("need rows >= 1")
    rng = random.Random(seed)
    body: list[list[str]] = []
    for n in range(1, rows + 1):
        description = f"{rng.choice(_MATERIALS)} {rng.choice(_ITEMS)} {rng.choice(_FINISHES)}"
        qty, price = rng.randint(1, 50), _price(rng)
        amount = (price * qty).quantize(CENT)
        body.append([str(n), f"P-{10000 + n}", description, str(qty), money(price), money(amount)])
    caption = f"Table 1: {TABLE_CAPTION}"
    header = CELL_SEP.join(TABLE_COLUMNS)
    lines = ["Parts catalogue extract", caption, header] + [CELL_SEP.join(r) for r in body]
    write_pdf(path, [lines], "Parts catalogue extract")
    truth = {
        "tables": [
            {"table": 1, "caption": TABLE_CAPTION, "columns": list(TABLE_COLUMNS), "page": 1}
        ],
        "rows": [
            {"table": 1, "cells": cells, "page": 1, "quote": CELL_SEP.join(cells)} for cells in body
        ],
    }
    return dump_truth(Tables, truth)


# --- invoices -------------------------------------------------------------------------------------

_INVOICE_HEADER: tuple[tuple[str, str], ...] = (
    ("Vendor", "Brightwater Industrial Services GmbH"),
    ("Vendor address", "Kaiserstrasse 41, 60329 Frankfurt am Main, Germany"),
    ("Vendor tax ID", "DE 811 204 377"),
    ("Customer", "Hollis Engineering Ltd"),
    ("Customer address", "14 Mill Lane, Leeds LS1 4AB, United Kingdom"),
    ("Invoice number", "INV-2024-0342"),
    ("Issue date", "2024-05-02"),
    ("Due date", "2024-06-01"),
    ("Currency", "EUR"),
)
#: How far the printed figures are off: subtotal vs the line sum, total vs subtotal + tax.
SUBTOTAL_ERROR = Decimal("100.00")
TOTAL_ERROR = Decimal("10.00")
TAX_RATE = Decimal("0.19")


def bad_invoice(path: Path | str, lines: int = 6, *, seed: int = 3) -> dict[str, Any]:
    """A one-page invoice (``invoice`` schema) whose figures do not add up.

    The printed subtotal is the sum of the line amounts plus :data:`SUBTOTAL_ERROR` (100.00), the
    tax is 19 % of the printed subtotal, and the printed total is subtotal + tax plus
    :data:`TOTAL_ERROR` (10.00). The truth holds the printed values (what an extraction must
    report); the correct sums follow from its line amounts.
    """
    if lines < 1:
        raise ValueError("need lines >= 1")
    rng = random.Random(seed)
    items = [
        _Line(n, None, _SERVICES[(n - 1) % len(_SERVICES)], rng.randint(1, 20), _price(rng))
        for n in range(1, lines + 1)
    ]
    line_sum = sum((i.amount for i in items), Decimal(0))
    subtotal = line_sum + SUBTOTAL_ERROR
    tax = (subtotal * TAX_RATE).quantize(CENT)
    total = subtotal + tax + TOTAL_ERROR
    totals = (("Subtotal", money(subtotal)), ("Tax", money(tax)), ("Total", money(total)))
    printed = ["INVOICE"] + [_label_line(label, value) for label, value in _INVOICE_HEADER]
    printed += ["", "Line | Description | Quantity | Unit price | Amount"]
    printed += [i.printed() for i in items] + [""]
    printed += [_label_line(label, value) for label, value in totals]
    printed += ["Tax rate 19 percent on the subtotal", "Page 1 of 1"]
    write_pdf(path, [printed], "Invoice INV-2024-0342")
    truth = _header_truth("invoice", _INVOICE_HEADER + totals, 1)
    truth["line_items"] = [_line_record(i, 1, i.printed()) for i in items]
    return dump_truth(Invoice, truth)


# --- helpers for tests and benchmarks -------------------------------------------------------------


def dump_truth(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` validated against ``model`` and dumped (JSON types, every field, nulls included).
    Top-level record lists are validated item by item, so a list bound on the model (one reply's
    ``max_length``, where a schema has one) never rejects a long document's truth: docvl's merged
    results are not bounded either."""
    lists = {k: v for k, v in data.items() if isinstance(v, list)}
    out = model.model_validate({**data, **{k: [] for k in lists}}).model_dump(mode="json")
    for name, items in lists.items():
        annotation = model.model_fields[name].annotation
        adapter: TypeAdapter[Any] = TypeAdapter(list[Any] if annotation is None else annotation)
        out[name] = adapter.dump_python(adapter.validate_python(items), mode="json")
    return out


def truth_on_pages(truth: dict[str, Any], pages: Collection[int]) -> dict[str, Any]:
    """``truth`` restricted to ``pages``: records (objects with an integer ``page``) on other pages
    are dropped from lists and become null elsewhere; an object left with only nulls (a party whose
    fields were all elsewhere) becomes null. What a reader of just those pages can report, except
    for lines split over a page break, which need both pages (see :func:`split_rows`). Returns a
    new object; ``truth`` is not changed."""
    shown = set(pages)

    def walk(node: Any, top: bool = False) -> Any:
        if isinstance(node, dict):
            page = node.get("page")
            if isinstance(page, int) and not isinstance(page, bool):
                return copy.deepcopy(node) if page in shown else None
            out = {k: walk(v) for k, v in node.items()}
            emptied = all(v is None for v in out.values()) and any(
                v is not None for v in node.values()
            )
            return None if emptied and not top else out
        if isinstance(node, list):
            return [w for w in (walk(v) for v in node) if w is not None]
        return node

    result: dict[str, Any] = walk(truth, top=True)
    return result


Generator = Callable[..., dict[str, Any]]

#: Generator name -> (generator, the schema name its truth follows).
DOCUMENTS: dict[str, tuple[Generator, str]] = {
    "purchase_order": (purchase_order, "purchase_order"),
    "table_page": (table_page, "tables"),
    "split_rows": (split_rows, "purchase_order"),
    "bad_invoice": (bad_invoice, "invoice"),
}
