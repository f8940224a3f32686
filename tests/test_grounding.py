"""Grounding against real text layers (PDFs made with PyMuPDF and loaded by the pipeline).

Boxes are checked against two oracles independent of the grounding code: PyMuPDF's own
``page.search_for`` and the ink of the rendered page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pymupdf
import pytest

from docvl.pipeline.ingest.document import PageInfo, Words
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.result import ENVELOPE_VERSION, Grounding, GroundingItem
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.grounding import ground, iter_records, number_forms

PAGE1 = [
    "ACME Corporation",
    "Invoice number: INV-2024-001",
    "Consulting services for the migra-",
    "tion project 1,234.50 EUR",
    "Total due: 1,234.50 EUR",
]
Rect = tuple[float, float, float, float]


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
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
    return path


@pytest.fixture
def pages(pdf: Path) -> list[PageInfo]:
    loaded = load_document(pdf, Settings())
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
        "line_items[2]": "page_only",  # page 2 has no text layer
        "line_items[3]": "ungrounded",
        "total": "grounded",  # 1234.5 printed as 1,234.50
        "terms": "grounded",  # fuzzy: one typo
        "due_date": "ungrounded",  # cites no page
    }
    assert (report.grounded, report.page_only, report.ungrounded) == (5, 1, 3)
    by_path = {item.path: item for item in report.items}
    assert (
        by_path["invoice_number"].checked == "quote" and by_path["vendor.name"].checked == "value"
    )
    assert "does not have" in (by_path["line_items[3]"].detail or "")
    match = {path: item.match for path, item in by_path.items()}
    assert match == {
        "vendor.name": "exact",
        "invoice_number": "casefold",
        "line_items[0]": "casefold",
        "line_items[1]": None,
        "line_items[2]": None,
        "line_items[3]": None,
        "total": "exact",
        "terms": "fuzzy",
        "due_date": None,
    }
    for item in report.items:
        located = item.status == "grounded"
        assert (item.page is not None) is located and (item.bbox is not None) is located
        if located:
            assert item.page in item.pages
            x0, y0, x1, y1 = item.bbox or (0, 0, 0, 0)
            assert 0 <= x0 < x1 <= 595 and 0 <= y0 < y1 <= 842
    # The hyphenated quote spans two lines: its box covers both.
    assert by_path["line_items[0]"].bbox is not None
    assert by_path["line_items[0]"].bbox[3] - by_path["line_items[0]"].bbox[1] > 20


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
    assert report.items[0].page == 3 and report.items[0].match == "exact"


def _search(page: pymupdf.Page, quote: str) -> list[Rect]:
    """PyMuPDF's own hits for ``quote``, on the page as displayed (after /Rotate)."""
    return [tuple(r * page.rotation_matrix) for r in page.search_for(quote)]  # type: ignore[misc]


def _contains(outer: Rect, inner: Rect, tol: float = 0.5) -> bool:
    return (
        outer[0] - tol <= inner[0]
        and outer[1] - tol <= inner[1]
        and inner[2] <= outer[2] + tol
        and inner[3] <= outer[3] + tol
    )


@pytest.mark.parametrize(
    "quote",
    ["Invoice number: INV-2024-001", "ACME Corporation", "1,234.50", "services for the"],
)
def test_exact_quote_box_matches_pymupdf_search(
    pdf: Path, pages: list[PageInfo], quote: str
) -> None:
    report = ground({"f": {"value": "x", "page": 1, "quote": quote}}, pages)
    item = report.items[0]
    assert (item.status, item.match, item.page) == ("grounded", "exact", 1)
    assert item.bbox is not None
    with pymupdf.open(pdf) as doc:
        hits = _search(doc[0], quote)
    assert hits
    first = hits[0]  # grounding takes the first occurrence, as search_for lists them
    # Whole words, so the box holds PyMuPDF's hit and is as tall as it; quotes on word boundaries
    # give the same box.
    assert _contains(item.bbox, first)
    assert item.bbox == pytest.approx(first, abs=1.0)
    # ...and it holds every word it overlaps.
    words = [w for w in pages[0].words if _overlaps(first, (w.x0, w.y0, w.x1, w.y1))]
    assert words and all(_contains(item.bbox, (w.x0, w.y0, w.x1, w.y1)) for w in words)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_each_stage_is_reported(pages: list[PageInfo]) -> None:
    quotes = {
        "exact": "Total due: 1,234.50 EUR",
        "whitespace": "ACME   Corporation Invoice number:",  # across a line break, extra spaces
        "casefold": "TOTAL DUE: 1,234.50 eur",
        "punctuation": "Invoice number INV 2024 001",
        "hyphenation": "for the migration project",
        "fuzzy": "Totl due: 1,243.50 EUR",
    }
    data = {name: {"value": "x", "page": 1, "quote": quote} for name, quote in quotes.items()}
    by_path = {i.path: i for i in ground(data, pages).items}
    assert {p: i.match for p, i in by_path.items()} == {
        "exact": "exact",
        "whitespace": "whitespace",
        "casefold": "casefold",
        "punctuation": "casefold",
        "hyphenation": "casefold",
        "fuzzy": "fuzzy",
    }
    assert all(i.status == "grounded" and i.bbox is not None for i in by_path.values())
    # The boxes are where the words are: the whitespace quote spans lines 1-2, the total line 5.
    line_tops = [w.y0 for w in pages[0].words]
    assert by_path["whitespace"].bbox is not None and by_path["exact"].bbox is not None
    assert by_path["whitespace"].bbox[1] == pytest.approx(min(line_tops), abs=0.01)
    assert by_path["exact"].bbox[1] == pytest.approx(max(line_tops), abs=0.01)
    assert by_path["fuzzy"].bbox == by_path["exact"].bbox  # the best window is the whole line


def test_fuzzy_takes_the_best_window() -> None:
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    info = _page_from_text(text)
    item = ground({"f": {"page": 1, "quote": "gamma delta epsilonn zeta"}}, [info]).items[0]
    assert item.match == "fuzzy"
    words = {w.text: w for w in info.words}
    assert item.bbox == (words["gamma"].x0, 0.0, words["zeta"].x1, 10.0)


def _page_from_text(text: str, page: int = 1) -> PageInfo:
    """A page whose words sit on one line, 10 points tall, one point apart per character."""
    items = []
    pos = 0
    for word in text.split(" "):
        start = text.index(word, pos)
        pos = start + len(word)
        items.append((start, pos, float(start), 0.0, float(pos), 10.0))
    return PageInfo(page, 600.0, 800.0, text, True, Words(text, items))


def test_no_text_layer_and_no_evidence_are_page_only(pages: list[PageInfo]) -> None:
    data = {
        "scan": {"value": "Scanned line", "page": 2},
        "nothing": {"flag": True, "page": 1},
        # Not on page 1 (text layer), and page 2 (scan) cannot be checked.
        "mixed": {"value": "only on the scan", "pages": [1, 2]},
        # Not on pages 1 and 3, both with a text layer.
        "both": {"value": "on neither page", "pages": [1, 3]},
    }
    by_path = {i.path: i for i in ground(data, pages).items}
    assert {p: i.status for p, i in by_path.items()} == {
        "scan": "page_only",
        "nothing": "page_only",
        "mixed": "page_only",
        "both": "ungrounded",
    }
    assert by_path["nothing"].checked == "none"
    assert "no text layer" in (by_path["mixed"].detail or "")
    assert all(i.bbox is None and i.page is None and i.match is None for i in by_path.values())


def test_scanned_pdf_is_page_only(tmp_path: Path) -> None:
    """A page that is only an image (a scan) has no text layer and no words."""
    doc = pymupdf.open()
    page = doc.new_page(width=300, height=200)
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 60, 40), False)
    pix.clear_with(200)
    page.insert_image(page.rect, pixmap=pix)
    path = tmp_path / "scan.pdf"
    doc.save(path)
    doc.close()
    loaded = load_document(path, Settings())
    assert not loaded.pages[0].has_text_layer and len(loaded.pages[0].words) == 0
    report = ground({"a": {"value": "Total 12.00", "page": 1}}, loaded.pages)
    assert (report.grounded, report.page_only, report.ungrounded) == (0, 1, 0)


def test_text_without_words_is_grounded_without_a_box() -> None:
    """Slide text from python-pptx (and form values) has no word boxes."""
    info = PageInfo(1, 960.0, 540.0, "Revenue grew 12% in 2023\nNotes: say it slowly", True)
    item = ground({"k": {"page": 1, "quote": "say it slowly"}}, [info]).items[0]
    assert (item.status, item.page, item.bbox, item.match) == ("grounded", 1, None, "exact")
    assert "no word boxes" in (item.detail or "")


def test_value_pieces_box_is_their_union() -> None:
    info = _page_from_text("Item Hosting monthly fee 99.00 EUR paid")
    item = ground({"li": {"description": "Hosting", "unit": "EUR", "page": 1}}, [info]).items[0]
    assert (item.status, item.checked, item.match) == ("grounded", "value", "exact")
    assert item.bbox == (5.0, 0.0, 34.0, 10.0)  # "Hosting" (5..12) to "EUR" (31..34)


def test_strictest_stage_wins_across_pages() -> None:
    one = _page_from_text("the total due is ACME", 1)
    two = _page_from_text("The Total Due is acme", 2)
    item = ground({"q": {"pages": [1, 2], "quote": "The Total Due"}}, [one, two]).items[0]
    assert (item.page, item.match) == (2, "exact")


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotated_page_box_is_on_the_displayed_page(tmp_path: Path, rotation: int) -> None:
    """/Rotate and an offset crop box: the box is on the page as rendered (the ink is in it)."""
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    page.insert_text((90, 160), "Grand total 4,321.00 USD", fontsize=14)
    page.insert_text((90, 400), "Other text far away", fontsize=14)
    page.set_cropbox(pymupdf.Rect(20, 30, 600, 700))
    page.set_rotation(rotation)
    path = tmp_path / "rot.pdf"
    doc.save(path)
    doc.close()
    loaded = load_document(path, Settings())
    info = loaded.pages[0]
    size = (670.0, 580.0) if rotation in (90, 270) else (580.0, 670.0)
    assert (info.width_pt, info.height_pt) == size
    item = ground({"t": {"page": 1, "quote": "Grand total 4,321.00 USD"}}, loaded.pages).items[0]
    assert item.status == "grounded" and item.bbox is not None
    x0, y0, x1, y1 = item.bbox
    assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
    with pymupdf.open(path) as reopened:
        page = reopened[0]
        (hit,) = _search(page, "Grand total 4,321.00 USD")
        assert item.bbox == pytest.approx(hit, abs=1.0)
        # The ink of the quoted line is inside the box (rendered at 72 dpi: 1 px = 1 pt).
        pix = page.get_pixmap(dpi=72, clip=pymupdf.Rect(page.rect))
        ink = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.h, pix.w, pix.n)[..., 0] < 128
    assert ink.shape == (round(size[1]), round(size[0]))
    box_ink = ink[int(y0) : int(y1) + 2, int(x0) : int(x1) + 2].sum()
    line_ink = ink[max(0, int(y0) - 8) : int(y1) + 9, max(0, int(x0) - 8) : int(x1) + 9].sum()
    assert box_ink > 100 and box_ink == line_ink  # all nearby ink is in the box
    assert ink.sum() > 1.5 * box_ink  # and the other line is elsewhere


def test_grounding_report_shape() -> None:
    assert ENVELOPE_VERSION == "1.3"
    assert set(Grounding.model_fields) == {"grounded", "page_only", "ungrounded", "items"}
    item = GroundingItem(path="a", status="grounded", page=1, bbox=(1, 2, 3, 4), match="exact")
    assert item.model_dump()["bbox"] == (1.0, 2.0, 3.0, 4.0)
    assert item.model_dump(mode="json")["bbox"] == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError):
        GroundingItem(path="a", status="unverifiable")  # type: ignore[arg-type]


def test_record_helpers() -> None:
    assert "1,234.50" in number_forms(1234.5) and "1.234,50" in number_forms(1234.5)
    assert [p for p, _ in iter_records({"a": [{"page": 1}, {"x": {"pages": [2]}}]})] == [
        "a[0]",
        "a[1].x",
    ]
