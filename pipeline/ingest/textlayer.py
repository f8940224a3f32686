"""Per-page text layers and document warnings for PDFs opened with PyMuPDF.

The document-level warnings (JavaScript, forms, permissions) are :mod:`pdfchecks`'s.

Text-layer heuristic (``text_is_usable``), deliberately simple:

* at least ``MIN_CHARS`` (16) non-whitespace characters — scans and photos have none, a lone page
  number is not a text layer;
* letters and digits make up at least half of the non-punctuation characters (dingbat rules, symbol
  soup and binary garbage from broken font encodings fail this);
* at least ``MIN_WORD_RATIO`` (60 %) of the tokens that contain letters look like words (letters,
  optionally with edge punctuation or a hyphen/apostrophe inside). OCR soup such as ``t>. ."5/0-``
  fails this.

Mediocre but readable OCR (corpus ``scanned/old_book_scan_bad_ocr.pdf``, ~90 % word-like tokens) is
kept as a text layer: the page image is always sent too, so the model can correct it.

Words (``text_and_words``): the text and ``get_text("words")`` come from one MuPDF text page, so
each word is found in the text, in order, and keeps its offsets there (in the corpus PDFs every
word does). MuPDF reports word boxes on the *unrotated* page (origin at the crop box's
top-left corner); ``page.rotation_matrix`` turns them into the displayed page's coordinates, the
orientation of ``page.rect`` and of the rendered image.
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

import pymupdf

from docvl.pipeline.ingest.document import NO_WORDS, PageInfo, Words
from docvl.pipeline.ingest.pdfchecks import document_warnings

MIN_CHARS = 16
MIN_ALNUM_RATIO = 0.5
MIN_WORD_RATIO = 0.6
#: Form values appended to a page's text, at most this many per page.
MAX_FORM_VALUES = 200
#: A word is looked for at most this many characters past the previous one (MuPDF puts only
#: whitespace and line breaks between them); a word not found there is left out.
WORD_SLACK = 256

_CONTROL = dict.fromkeys(c for c in range(32) if chr(c) not in "\n\t")
_CONTROL[127] = None
_SURROGATE = re.compile("[\ud800-\udfff]")
_EDGE_PUNCT = "\"'()[]{}<>.,;:!?\u2018\u2019\u201c\u201d\u00ab\u00bb\u2026*\u2013\u2014-/"
_INNER_OK = re.compile(r"^[^\W\d_]+(?:[-'\u2019.\u00ad][^\W\d_]+)*$")


def clean_text(text: str) -> str:
    """``text`` without control characters (terminal escapes) and with every character encodable
    as UTF-8 (lone surrogates from undecodable bytes become U+FFFD), so that JSON, logs and a
    terminal can always print it."""
    return _SURROGATE.sub("\ufffd", text.translate(_CONTROL))


def text_is_usable(text: str) -> bool:
    """True when ``text`` is worth giving the model as a page's text layer (see module doc).

    Character classes are looked up once per *distinct* character (a page has a few hundred), and
    tokens matched once per distinct token, not once per occurrence: the same rules, about 10x
    cheaper on text-dense pages.
    """
    tokens = text.split()
    counts = Counter("".join(tokens))  # every non-whitespace character (str.split = isspace)
    if sum(counts.values()) < MIN_CHARS:
        return False
    alnum = sum(n for c, n in counts.items() if c.isalnum())
    non_punct = sum(n for c, n in counts.items() if not unicodedata.category(c).startswith("P"))
    if non_punct and alnum / non_punct < MIN_ALNUM_RATIO:
        return False
    letters = frozenset(c for c in counts if c.isalpha())
    lettered = wordlike = 0
    for token, n in Counter(tokens).items():  # each distinct token judged once
        if not letters.isdisjoint(token):
            lettered += n
            if _INNER_OK.match(token.strip(_EDGE_PUNCT) or "-"):
                wordlike += n
    if not lettered:
        return True  # numbers-only pages (tables of figures) are a fine text layer
    return wordlike / lettered >= MIN_WORD_RATIO


def iter_widgets(page: pymupdf.Page) -> Iterator[Any]:
    """The page's form widgets in /Annots order, as ``page.widgets()`` yields them, in linear time:
    ``widgets()`` looks each one up by xref through the whole widget list (quadratic: 40% of loading
    a 2-page tax form with 121 fields per page)."""
    widget = page.first_widget
    while widget is not None:
        yield widget
        widget = widget.next


def form_values(page: pymupdf.Page) -> list[str]:
    """``name: value`` lines for the filled form fields of a page (their values are not page
    text)."""
    lines: list[str] = []
    for widget in iter_widgets(page):
        value = widget.field_value
        if value in (None, "", "Off", False) or len(lines) >= MAX_FORM_VALUES:
            continue
        name = widget.field_label or (widget.field_name or "field").rsplit(".", 1)[-1]
        lines.append(f"{name}: {value}")
    return lines


def text_and_words(page: pymupdf.Page) -> tuple[str, Words]:
    """A page's text (``get_text("text")``, unchanged) and its words with boxes (see module doc)."""
    # get_textpage()'s default flags differ from get_text("text")'s (ligatures get expanded): pass
    # the text's flags so that the text stays exactly what it was.
    textpage = page.get_textpage(flags=pymupdf.TEXTFLAGS_TEXT)
    text: str = page.get_text("text", textpage=textpage)  # type: ignore[no-untyped-call]
    raw = page.get_text("words", textpage=textpage)  # type: ignore[no-untyped-call]
    return text, align_words(text, raw, page.rotation_matrix, page.rect)


def align_words(
    text: str,
    raw: Sequence[Sequence[Any]],
    matrix: pymupdf.Matrix | None = None,
    rect: pymupdf.Rect | None = None,
) -> Words:
    """Words of ``text`` from MuPDF's ``(x0, y0, x1, y1, word, ...)`` tuples: each located in the
    text after the previous one, its box mapped by ``matrix`` (unrotated -> displayed page) and
    clipped to ``rect``."""
    if not raw:
        return NO_WORDS
    a, b, c, d, e, f = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    if matrix is not None:
        a, b, c, d, e, f = (
            float(v) for v in (matrix.a, matrix.b, matrix.c, matrix.d, matrix.e, matrix.f)
        )
    turned = (a, b, c, d, e, f) != (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    found: list[int] = []
    kept: list[Sequence[Any]] = []
    find = text.find
    cursor = 0
    for entry in raw:
        word = entry[4]
        start = find(word, cursor, cursor + WORD_SLACK + len(word)) if word else -1
        if start < 0:
            continue
        cursor = start + len(word)
        found += (start, cursor)
        kept.append(entry)
    spans: array[int] = array("I", found)
    if not turned:
        boxes: array[float] = array("d", chain.from_iterable(entry[:4] for entry in kept))
    else:
        boxes = array("d")
        for entry in kept:
            x0, y0, x1, y1 = entry[:4]
            xa, ya = a * x0 + c * y0 + e, b * x0 + d * y0 + f
            xb, yb = a * x1 + c * y1 + e, b * x1 + d * y1 + f
            x0, x1 = (xa, xb) if xa <= xb else (xb, xa)
            y0, y1 = (ya, yb) if ya <= yb else (yb, ya)
            boxes.extend((x0, y0, x1, y1))
    if rect is not None and boxes:
        _clip(boxes, float(rect.width), float(rect.height))
    return Words.trusted(text, spans, boxes)


def _clip(boxes: array[float], width: float, height: float) -> None:
    """Clip boxes (x0, y0, x1, y1, ...) to the page in place (text outside the crop box)."""
    xs, ys = boxes[0::2], boxes[1::2]
    if min(xs) >= 0 and min(ys) >= 0 and max(xs) <= width and max(ys) <= height:
        return
    for i in range(0, len(boxes), 2):
        boxes[i] = min(max(boxes[i], 0.0), width)
        boxes[i + 1] = min(max(boxes[i + 1], 0.0), height)


def extract_pages(doc: pymupdf.Document) -> tuple[list[PageInfo], list[str]]:
    """PageInfo for every page (geometry after /Rotate, text, usability flag) and warnings.

    ``page.rect`` in PyMuPDF is already the rotated, cropped page (a /Rotate 90 Letter page is
    792 x 612), which is the orientation the renderer produces.
    """
    return _walk(doc, with_text=True)


def page_sizes(doc: pymupdf.Document) -> list[PageInfo]:
    """The pages of :func:`extract_pages` without their text: the same sizes (and the same
    fallbacks for unreadable pages), for rendering while the text is extracted elsewhere."""
    return _walk(doc, with_text=False)[0]


def read_layer(doc: pymupdf.Document) -> tuple[list[PageInfo], list[str]]:
    """Every page's text layer and the document's warnings (JavaScript, forms, permissions, then
    per-page problems): what loading a PDF reports, whichever process extracts it."""
    pages, warnings = extract_pages(doc)
    return pages, document_warnings(doc) + warnings


def _walk(doc: pymupdf.Document, with_text: bool) -> tuple[list[PageInfo], list[str]]:
    pages: list[PageInfo] = []
    warnings: list[str] = []
    last_size = (612.0, 792.0)
    for index in range(doc.page_count):
        number = index + 1
        try:
            page = doc.load_page(index)  # type: ignore[no-untyped-call]
            rect = page.rect
            size = (float(rect.width), float(rect.height))
        except Exception as exc:
            warnings.append(f"page {number}: cannot be read ({exc}); it may fail to render")
            pages.append(PageInfo(number, last_size[0], last_size[1], "", False))
            continue
        if size[0] <= 0 or size[1] <= 0:
            warnings.append(f"page {number}: empty page box; using the previous page's size")
            size = last_size
        last_size = size
        if with_text:
            pages.append(page_text(page, number, size, warnings))
        else:
            pages.append(PageInfo(number, size[0], size[1], "", False))
    return pages, warnings


def page_text(
    page: pymupdf.Page, number: int, size: tuple[float, float], warnings: list[str]
) -> PageInfo:
    """One page's text layer (text, words, form values, usability); problems go to ``warnings``."""
    words = NO_WORDS
    try:
        text, words = text_and_words(page)
    except Exception as exc:
        warnings.append(f"page {number}: text extraction failed ({exc})")
        text = ""
    try:
        fields = form_values(page)
    except Exception as exc:
        warnings.append(f"page {number}: form fields unreadable ({exc})")
        fields = []
    usable = text_is_usable(text)
    if fields:
        text = text.rstrip("\n") + "\nForm fields:\n" + "\n".join(fields) + "\n"
        usable = usable or len(fields) > 0
    return PageInfo(number, size[0], size[1], text, usable, words)
