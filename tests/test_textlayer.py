"""Words of the text layer: offsets in the page text, boxes on the page as displayed."""

from __future__ import annotations

import pickle
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from docvl.pipeline.ingest.document import NO_WORDS, PageInfo, Word, Words
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.ingest.textlayer import align_words, text_and_words
from docvl.pipeline.settings import Settings


def _words_pdf(path: Path, rotation: int = 0) -> Path:
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    page.insert_text((72, 100), "Hello  rotated world,\ttotal due 1,234.50 EUR")
    page.insert_text((72, 130), "second line")
    page.set_rotation(rotation)
    doc.save(path)
    doc.close()
    return path


def _check_words(page: pymupdf.Page, text: str, words: Words) -> None:
    raw = page.get_text("words")
    assert text == page.get_text("text")  # the text layer itself is unchanged
    assert [w.text for w in words] == [r[4] for r in raw]
    rect = page.rect
    previous_end = 0
    for word, r in zip(words, raw, strict=True):
        assert text[word.start : word.end] == word.text and word.start >= previous_end
        previous_end = word.end
        assert 0 <= word.x0 <= word.x1 <= rect.width + 1e-3
        assert 0 <= word.y0 <= word.y1 <= rect.height + 1e-3
        expected = pymupdf.Rect(r[:4]) * page.rotation_matrix
        assert (word.x0, word.y0, word.x1, word.y1) == pytest.approx(tuple(expected), abs=1e-3)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_words_align_with_the_text(tmp_path: Path, rotation: int) -> None:
    path = _words_pdf(tmp_path / "w.pdf", rotation)
    with pymupdf.open(path) as doc:
        page = doc[0]
        text, words = text_and_words(page)
        _check_words(page, text, words)
        assert [w.text for w in words][:3] == ["Hello", "rotated", "world,"]
        if rotation in (90, 270):  # the line runs down the displayed page
            assert words[0].y0 != words[1].y0 and words[0].x0 == pytest.approx(words[1].x0)


def test_load_keeps_words(tmp_path: Path) -> None:
    loaded = load_document(_words_pdf(tmp_path / "r.pdf", 90), Settings())
    info = loaded.pages[0]
    assert (info.width_pt, info.height_pt) == (792.0, 612.0)
    assert len(info.words) == 9 and info.words[-1].text == "line"
    assert all(0 <= w.x1 <= 792 and 0 <= w.y1 <= 612 for w in info.words)
    assert "words" not in repr(info) and "Words(" not in repr(info)


def test_image_has_no_words(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (40, 30), "white").save(path)
    assert load_document(path, Settings()).pages[0].words is NO_WORDS


def test_align_skips_words_not_in_the_text() -> None:
    text = "alpha beta\ngamma"
    raw = [
        (0, 0, 5, 10, "alpha"),
        (6, 0, 9, 10, "zzz"),  # not in the text: left out
        (6, 0, 10, 10, "beta"),
        (0, 12, 5, 22, "gamma"),
        (0, 24, 5, 34, "alpha"),  # only earlier in the text: left out
    ]
    words = align_words(text, raw)
    assert [(w.text, w.start, w.end) for w in words] == [
        ("alpha", 0, 5),
        ("beta", 6, 10),
        ("gamma", 11, 16),
    ]
    assert align_words(text, []) is NO_WORDS


def test_words_container() -> None:
    text = "one two three"
    words = Words(text, [(0, 3, 1, 2, 3, 4), (4, 7, 5, 2, 7, 6), (8, 13, 9, 1, 12, 5)])
    assert len(words) == 3 and words[-1] == Word("three", 9, 1, 12, 5, 8, 13)
    assert words[0:2] == (Word("one", 1, 2, 3, 4, 0, 3), Word("two", 5, 2, 7, 6, 4, 7))
    assert list(words.starts()) == [0, 4, 8] and list(words.ends()) == [3, 7, 13]
    assert words.box(0, 3) == (1, 1, 12, 6) and words.box(1, 1) is None
    with pytest.raises(IndexError):
        words[3]
    with pytest.raises(ValueError):
        Words(text, [(4, 7, 0, 0, 1, 1), (0, 3, 0, 0, 1, 1)])  # out of order
    copy = pickle.loads(pickle.dumps(words))
    assert list(copy) == list(words)
    page = PageInfo(1, 10.0, 10.0, text, True, words)
    assert page == PageInfo(1, 10.0, 10.0, text, True)  # words do not take part in equality


def test_corpus_words(corpus: Path) -> None:
    """Real files: every word is a span of the text and lies on the displayed page."""
    for rel in (
        "good/wikipedia_rotated90.pdf",
        "bad/huge_page_A0_rotated.pdf",
        "good/tracemonkey_paper.pdf",
        "good/arabic_rtl_1p.pdf",
        "scanned/book_scan_with_ocr_layer_6p.pdf",
    ):
        loaded = load_document(corpus / rel, Settings())
        with pymupdf.open(corpus / rel) as doc:
            for info, page in zip(loaded.pages, doc, strict=True):
                assert len(info.words) == len(page.get_text("words")), rel
                for word in info.words:
                    assert info.text[word.start : word.end] == word.text
                    assert 0 <= word.x0 <= word.x1 <= info.width_pt + 1e-3, rel
                    assert 0 <= word.y0 <= word.y1 <= info.height_pt + 1e-3, rel
    rotated = load_document(corpus / "good/wikipedia_rotated90.pdf", Settings()).pages[0]
    assert len(rotated.words) > 300
    scan = load_document(corpus / "scanned/lincoln_letter_handwritten.pdf", Settings())
    assert all(len(p.words) == 0 for p in scan.pages)
