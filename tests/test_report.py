"""flows/report.py: the markdown form of a record (Prefect artifacts, ``--to md``)."""

from __future__ import annotations

from docvl.flows.report import document_markdown, field_rows, item_page
from docvl.pipeline.result import (
    ExtractionOutput,
    Grounding,
    GroundingItem,
    ResultEnvelope,
    Source,
    SummaryOutput,
)
from docvl.schemas import DocumentSummary

ITEMS = [
    GroundingItem(path="total", pages=[2], status="grounded", page=2, confidence=0.91),
    GroundingItem(path="lines[0]", pages=[1, 2], status="page_only"),
]
DATA = {
    "total": {"value": 12.5, "page": 2, "quote": "Total 12.50"},
    "lines": [{"description": "Bolt | M8", "amount": 3.0, "page": 1, "quote": "Bolt 3.00"}],
    "note": None,
}


def test_fields_take_the_grounding_of_their_record() -> None:
    rows = {path: (value, item) for path, value, item in field_rows(DATA, ITEMS)}
    assert list(rows) == ["total", "lines[0].description", "lines[0].amount", "note"]
    assert rows["total"] == (12.5, ITEMS[0])
    assert rows["lines[0].amount"] == (3.0, ITEMS[1])
    assert rows["note"] == (None, None)
    assert item_page(ITEMS[0]) == 2 and item_page(ITEMS[1]) == 1 and item_page(None) is None


def test_markdown_shows_fields_with_grounding_and_escapes_document_text() -> None:
    env = ResultEnvelope(
        source=Source(path="<b>doc</b>.pdf", pages=2),
        status="ok",
        summary=SummaryOutput(data=DocumentSummary(summary="<script>x()</script>")),
        extraction=ExtractionOutput(
            schema_name="order",
            schema_version="1",
            data=DATA,
            grounding=Grounding(grounded=1, page_only=1, items=ITEMS),
        ),
    )
    text = document_markdown(env)
    assert "<script>" not in text and "&lt;script&gt;x()&lt;/script&gt;" in text
    assert "# &lt;b&gt;doc&lt;/b&gt;.pdf" in text
    assert "| `total` | 12.5 | 2 | grounded | 0.91 |" in text
    assert "| `lines[0].description` | Bolt \\| M8 | 1 | page_only | – |" in text
    assert "1 grounded, 1 on the cited page only, 0 ungrounded" in text
