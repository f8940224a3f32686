"""Grounding against real text layers (a PDF made with PyMuPDF and loaded by the pipeline)."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from pipeline.ingest.document import PageInfo
from pipeline.ingest.load import load_document
from pipeline.settings import Settings
from pipeline.tasks.grounding import ground, iter_records, normalize, number_forms, text_contains

PAGE1 = [
    "ACME Corporation",
    "Invoice number: INV-2024-001",
    "Consulting services for the migra-",
    "tion project 1,234.50 EUR",
    "Total due: 1,234.50 EUR",
]


@pytest.fixture
def pages(tmp_path: Path) -> list[PageInfo]:
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    for i, line in enumerate(PAGE1):
        page.insert_text((72, 72 + 16 * i), line)
    doc.new_page(width=595, height=842)  # page 2: no text layer (a "scan")
    page = doc.new_page(width=595, height=842)
    page.insert_text((72, 72), "Payment is due within thirty days of the invoice date.")
    path = tmp_path / "inv.pdf"
    doc.save(path)
    doc.close()
    loaded = load_document(path, Settings())
    assert [p.has_text_layer for p in loaded.pages] == [True, False, True]
    return loaded.pages


def test_flags_on_a_real_text_layer(pages: list[PageInfo]) -> None:
    data = {
        "vendor": {"name": {"value": "ACME Corporation", "page": 1, "quote": None}},
        "invoice_number": {
            "value": "INV-2024-001",
            "page": 1,
            "quote": "invoice number: inv-2024-001",
        },
        "line_items": [
            {
                "description": "Consulting services for the migration project",
                "amount": 1234.5,
                "page": 1,
                "quote": "Consulting services for the migration project",
            },
            {"description": "Hosting", "amount": 99.0, "page": 1, "quote": None},
            {"description": "Scanned line", "amount": 5.0, "page": 2, "quote": "whatever"},
            {"description": "Ghost", "amount": 1.0, "page": 9, "quote": None},
        ],
        "total": {"value": 1234.5, "page": 1, "quote": None},
        "tax": {"value": None, "page": None, "quote": None},
        "terms": {"value": "Payment is due within thirty dayz of the invoice date", "page": 3},
        "due_date": {"value": "2024-02-01", "page": None},
    }
    report = ground(data, pages)
    status = {item.path: item.status for item in report.items}
    assert status == {
        "vendor.name": "grounded",
        "invoice_number": "grounded",
        "line_items[0]": "grounded",  # hyphenation "migra-\ntion" joined
        "line_items[1]": "ungrounded",
        "line_items[2]": "unverifiable",
        "line_items[3]": "ungrounded",
        "total": "grounded",  # 1234.5 printed as 1,234.50
        "terms": "grounded",  # fuzzy: one typo
        "due_date": "ungrounded",  # cites no page
    }
    assert (report.grounded, report.ungrounded, report.unverifiable) == (5, 3, 1)
    by_path = {item.path: item for item in report.items}
    assert (
        by_path["invoice_number"].checked == "quote" and by_path["vendor.name"].checked == "value"
    )
    assert "does not have" in (by_path["line_items[3]"].detail or "")


def test_answer_quotes_use_text_and_pages(pages: list[PageInfo]) -> None:
    report = ground(
        {
            "quotes": [
                {"page": 3, "text": "due within thirty days", "document": None},
                {"page": 3, "text": "due within sixty weeks of delivery", "document": None},
            ]
        },
        pages,
    )
    assert [i.status for i in report.items] == ["grounded", "ungrounded"]


def test_normalisation_helpers() -> None:
    assert normalize("  Ｆｏｏ\u00a0“Bar”\u2014baz ") == 'foo "bar"-baz'
    assert normalize("migra-\n tion") == "migration"
    assert "1,234.50" in number_forms(1234.5) and "1.234,50" in number_forms(1234.5)
    assert text_contains(normalize("The Quick, brown fox."), "thequickbrownfox", "quick brown")
    assert not text_contains(normalize("a b c d e f"), "abcdef", "zebra crossing here")
    assert [p for p, _ in iter_records({"a": [{"page": 1}, {"x": {"pages": [2]}}]})] == [
        "a[0]",
        "a[1].x",
    ]
