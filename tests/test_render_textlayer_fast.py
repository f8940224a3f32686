"""The counting rewrite of ``text_is_usable`` decides exactly as the per-character original."""

from __future__ import annotations

import unicodedata

import pymupdf
import pytest
from conftest import corpus_path
from hypothesis import given, settings
from hypothesis import strategies as st

from docvl.pipeline.ingest import textlayer
from docvl.pipeline.ingest.textlayer import (
    _EDGE_PUNCT,
    _INNER_OK,
    MIN_ALNUM_RATIO,
    MIN_CHARS,
    MIN_WORD_RATIO,
    text_is_usable,
)

CORPUS = corpus_path()


def reference(text: str) -> bool:
    """The original per-character implementation (before the Counter rewrite), as the oracle."""
    chars = [c for c in text if not c.isspace()]
    if len(chars) < MIN_CHARS:
        return False
    alnum = sum(1 for c in chars if c.isalnum())
    non_punct = sum(1 for c in chars if not unicodedata.category(c).startswith("P"))
    if non_punct and alnum / non_punct < MIN_ALNUM_RATIO:
        return False
    lettered = [t for t in text.split() if any(c.isalpha() for c in t)]
    if not lettered:
        return True
    wordlike = sum(1 for t in lettered if _INNER_OK.match(t.strip(_EDGE_PUNCT) or "-"))
    return wordlike / len(lettered) >= MIN_WORD_RATIO


ALPHABET = st.sampled_from(list("aZé9 \t\n\u00a0\u2003.,;-'()*/x1\u0663\u4e2d\u2022_$%\u00ad\x1c"))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(ALPHABET, max_size=12), max_size=20).map(" ".join))
def test_same_decision_as_reference(text: str) -> None:
    assert text_is_usable(text) == reference(text)


@pytest.mark.parametrize(
    "text, usable",
    [
        ("", False),
        ("page 12", False),
        ("The quick brown fox jumps over the lazy dog.", True),
        ("1,234 5,678 9,012 3,456 7,890", True),
        ('t>. ."5/0- ~~ ^^ t>. ."5/0- ~~ ^^ q#x', False),
        (" ".join(["\u2022"] * 12) + " ab", False),
    ],
)
def test_known_decisions(text: str, usable: bool) -> None:
    assert text_is_usable(text) is usable
    assert reference(text) is usable


@pytest.mark.slow
def test_corpus_pages_decide_as_reference() -> None:
    paths = sorted((CORPUS / "good").glob("*.pdf")) + sorted((CORPUS / "scanned").glob("*.pdf"))
    if not paths:
        pytest.fail(f"corpus not found at {CORPUS}")
    checked = 0
    for path in paths:
        with pymupdf.open(path) as pdoc:
            for index in range(min(pdoc.page_count, 40)):
                text, _ = textlayer.text_and_words(pdoc.load_page(index))
                assert text_is_usable(text) == reference(text), (path.name, index + 1)
                checked += 1
    assert checked > 50


def test_widgets_in_linear_order_match_pymupdf() -> None:
    path = CORPUS / "good" / "irs_f1040_prefilled_2p.pdf"
    if not path.exists():
        pytest.fail(f"corpus not found at {CORPUS}")
    with pymupdf.open(path) as pdoc:
        for page in pdoc:
            ours = [(w.xref, w.field_name, w.field_value) for w in textlayer.iter_widgets(page)]
            theirs = [(w.xref, w.field_name, w.field_value) for w in page.widgets()]
            assert ours == theirs
            assert len(ours) > 10
        assert any(textlayer.form_values(page) for page in pdoc)
