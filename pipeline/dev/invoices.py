"""Synthetic invoices with known contents (see :mod:`docvl.pipeline.dev.synth` for the conventions).

* :func:`bad_invoice`: one page whose printed totals do not add up;
* :func:`invoice`: several pages whose totals add up, its lines spread over the pages (the header
  fields on page 1, the totals on the last page), for extraction with a user's invoice schema.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

from docvl.pipeline.dev.printed import CENT, SERVICES, Line, money, price, write_pdf
from docvl.pipeline.dev.truth import dump_truth, header_truth, label_line, line_record
from docvl.schemas import Invoice

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
        Line(n, None, SERVICES[(n - 1) % len(SERVICES)], rng.randint(1, 20), price(rng))
        for n in range(1, lines + 1)
    ]
    line_sum = sum((i.amount for i in items), Decimal(0))
    subtotal = line_sum + SUBTOTAL_ERROR
    tax = (subtotal * TAX_RATE).quantize(CENT)
    total = subtotal + tax + TOTAL_ERROR
    totals = (("Subtotal", money(subtotal)), ("Tax", money(tax)), ("Total", money(total)))
    printed = ["INVOICE"] + [label_line(label, value) for label, value in _INVOICE_HEADER]
    printed += ["", "Line | Description | Quantity | Unit price | Amount"]
    printed += [i.printed() for i in items] + [""]
    printed += [label_line(label, value) for label, value in totals]
    printed += ["Tax rate 19 percent on the subtotal", "Page 1 of 1"]
    write_pdf(path, [printed], "Invoice INV-2024-0342")
    truth = header_truth("invoice", _INVOICE_HEADER + totals, 1)
    truth["line_items"] = [line_record(i, 1, i.printed()) for i in items]
    return dump_truth(Invoice, truth)


_INVOICE_COLUMNS = "Line | Description | Quantity | Unit price | Amount"


def invoice(path: Path | str, lines: int = 60, pages: int = 3, *, seed: int = 4) -> dict[str, Any]:
    """An invoice (``invoice`` schema) of ``pages`` pages whose figures add up: ``lines`` service
    lines spread evenly over the pages, the header fields and column names on page 1, a running
    header on the others, the subtotal (the line sum), 19 % tax and the total on the last page,
    and a ``Page i of n`` footer on every page."""
    if pages < 1 or lines < 1:
        raise ValueError("need pages >= 1 and lines >= 1")
    rng = random.Random(seed)
    items = [
        Line(
            n,
            None,
            f"{SERVICES[(n - 1) % len(SERVICES)]} batch {n}",
            rng.randint(1, 20),
            price(rng),
        )
        for n in range(1, lines + 1)
    ]
    subtotal = sum((i.amount for i in items), Decimal(0))
    tax = (subtotal * TAX_RATE).quantize(CENT)
    totals = (("Subtotal", money(subtotal)), ("Tax", money(tax)), ("Total", money(subtotal + tax)))
    number = _INVOICE_HEADER[5][1]
    printed: list[list[str]] = []
    records: list[dict[str, Any]] = []
    for page in range(1, pages + 1):
        chunk = items[(page - 1) * lines // pages : page * lines // pages]
        if page == 1:
            text = ["INVOICE"] + [label_line(label, value) for label, value in _INVOICE_HEADER]
            text += ["", _INVOICE_COLUMNS]
        else:
            text = [f"Invoice {number}, continued"]
        text += [i.printed() for i in chunk]
        records += [line_record(i, page, i.printed()) for i in chunk]
        if page == pages:
            text += [""] + [label_line(label, value) for label, value in totals]
        text.append(f"Page {page} of {pages}")
        printed.append(text)
    write_pdf(path, printed, f"Invoice {number}")
    truth = header_truth("invoice", _INVOICE_HEADER, 1)
    truth.update(header_truth("invoice", totals, pages))
    truth["line_items"] = records
    return dump_truth(Invoice, truth)
