"""Locating evidence on one page's text layer (pipeline/tasks/locate.py)."""

from __future__ import annotations

from docvl.pipeline.ingest.document import PageInfo
from docvl.pipeline.tasks.charmap import normalize
from docvl.pipeline.tasks.locate import PageText, text_contains


def test_text_contains_in_normalised_and_compact_forms() -> None:
    assert text_contains(normalize("The Quick, brown fox."), "thequickbrownfox", "quick brown")
    assert not text_contains(normalize("a b c d e f"), "abcdef", "zebra crossing here")


def test_page_text_locates_at_the_strictest_stage_and_contains() -> None:
    pages = [
        PageInfo(1, 600.0, 800.0, "ACME Corporation\nInvoice number: INV-1", True),
        PageInfo(2, 600.0, 800.0, "", False),
        PageInfo(3, 600.0, 800.0, "Payment is due within thirty days.", True),
    ]
    texts = PageText(pages)
    assert texts.contains(1, "acme corporation") and not texts.contains(3, "acme corporation")
    assert not texts.has_layer(2) and texts.has_layer(3)
    hit = texts.locate([1, 3], ["Payment is due", "ACME Corporation"])
    assert hit is not None and (hit.page, hit.stage) == (1, "exact")
    hit = texts.locate([1, 3], ["payment IS due"])
    assert hit is not None and (hit.page, hit.stage) == (3, "casefold")
    assert texts.locate([1, 3], ["zebra crossing here"]) is None
