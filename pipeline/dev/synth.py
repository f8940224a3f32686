"""Synthetic documents with known contents, for tests and benchmarks (no model, no network).

Each generator writes a PDF with PyMuPDF and returns its ground truth: the data of the docvl schema
the document is made for, as ``Model.model_validate(x).model_dump(mode="json")`` gives it (every
field present, nulls included; see :func:`dump_truth`), so it compares equal to an envelope's
extraction data. Every
record carries the ``page`` it is printed on (where it starts) and, where the schema has one, its
``quote``: the line as printed. Contents are seeded: the same arguments give the same bytes.


:data:`DOCUMENTS` maps each generator's name to the generator and the schema its truth follows.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from docvl.pipeline.dev.invoices import SUBTOTAL_ERROR, TOTAL_ERROR, bad_invoice, invoice
from docvl.pipeline.dev.printed import (
    CELL_SEP,
    CENT,
    CONT_RE,
    EXTRAS,
    FINISHES,
    ITEMS,
    LINE_RE,
    MATERIALS,
    START_RE,
    Line,
    money,
    price,
    write_pdf,
)
from docvl.pipeline.dev.truth import (
    dump_truth,
    header_truth,
    label_line,
    line_record,
    sourced,
    split_lines,
    truth_on_pages,
)
from docvl.schemas import PurchaseOrder, Tables

__all__ = [
    "CELL_SEP",
    "CONT_RE",
    "DOCUMENTS",
    "LINE_RE",
    "START_RE",
    "SUBTOTAL_ERROR",
    "TOTAL_ERROR",
    "bad_invoice",
    "dump_truth",
    "invoice",
    "purchase_order",
    "split_lines",
    "split_rows",
    "table_page",
    "truth_on_pages",
    "write_pdf",
]


def _order_lines(rng: random.Random, count: int, *, long_every: int = 0) -> list[Line]:
    out = []
    for n in range(1, count + 1):
        words = f"{rng.choice(MATERIALS)} {rng.choice(ITEMS)} {rng.choice(FINISHES)}"
        if long_every and n % long_every == 0:
            words += " " + rng.choice(EXTRAS)
        out.append(Line(n, f"SKU-{n:04d}", words, rng.randint(1, 50), price(rng)))
    return out


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


def _order_document(
    path: Path | str, per_page: Sequence[Sequence[Line]], split_after: Collection[int]
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
            page += [label_line(label, value) for label, value in _PO_HEADER] + [""]
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
            records.append(line_record(line, number, quote))
        if number == total_pages:
            page += ["", label_line("Total", money(total))]
        page.append(f"Page {number} of {total_pages}")
        printed.append(page)
    write_pdf(path, printed, f"Purchase order {po_number}")
    truth = header_truth("purchase_order", _PO_HEADER, 1)
    truth["lines"] = records
    truth["total"] = sourced("Total", money(total), total_pages, amount=True)
    return dump_truth(PurchaseOrder, truth)


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
    per_page: list[list[Line]] = []
    for p in range(1, pages + 1):
        chunk = items[(p - 1) * lines_per_page : p * lines_per_page]
        if p in splits:
            last = chunk[-1]
            extra = EXTRAS[p % len(EXTRAS)]
            chunk[-1] = Line(
                last.number, last.sku, f"{last.description} {extra}", last.quantity, last.unit_price
            )
        per_page.append(chunk)
    return _order_document(path, per_page, splits)


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
        description = f"{rng.choice(MATERIALS)} {rng.choice(ITEMS)} {rng.choice(FINISHES)}"
        qty, unit = rng.randint(1, 50), price(rng)
        amount = (unit * qty).quantize(CENT)
        body.append([str(n), f"P-{10000 + n}", description, str(qty), money(unit), money(amount)])
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


Generator = Callable[..., dict[str, Any]]

#: Generator name -> (generator, the schema name its truth follows).
DOCUMENTS: dict[str, tuple[Generator, str]] = {
    "purchase_order": (purchase_order, "purchase_order"),
    "table_page": (table_page, "tables"),
    "split_rows": (split_rows, "purchase_order"),
    "bad_invoice": (bad_invoice, "invoice"),
}
