from __future__ import annotations

import csv
import os
import re
import unicodedata
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from docvl.pipeline.errors import DocvlError, PasswordRequired, UnsupportedFormat, WrongPassword
from docvl.pipeline.ingest.document import DocKind
from docvl.pipeline.ingest.load import load_document, password_candidates, saslprep
from docvl.pipeline.settings import Settings

#: Rows whose MANIFEST 'pages' column is not the outcome docvl defines for them.
EXPECTED_ERRORS = {
    "bad/empty_0_bytes.pdf": "empty_file",
    "bad/fuzzed_unopenable.pdf": "corrupt_document",
    "bad/truncated_mid_stream.pdf": "empty_document",  # MuPDF repairs it to 0 pages
    "bad/not_a_pdf_markdown.pdf": "unsupported_format",  # MuPDF would open it as 1 Markdown page
    "bad/truncated_no_central_directory.pptx": "corrupt_document",
    "bad/zero_slides.pptx": "empty_document",
}
#: Big decks: LibreOffice needs ~60-90 s for the 48-slide one on a busy 2-core machine.
SLIDE_TIMEOUT_S = 600.0


def manifest_rows() -> list[dict[str, str]]:
    """Rows at collection time (same location rule as the ``corpus`` fixture, which fails
    loudly)."""
    root = Path(
        os.environ.get(
            "DOCVL_CORPUS", Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
        )
    )
    manifest = root / "MANIFEST.tsv"
    if not manifest.is_file():
        return [{"relpath": "<corpus missing>", "pages": "", "what_it_exercises": ""}]
    with manifest.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _params() -> list[object]:
    out = []
    for row in manifest_rows():
        marks = [pytest.mark.slow] if row["relpath"].endswith((".pptx", ".ppt")) else []
        out.append(pytest.param(row, id=row["relpath"], marks=marks))
    return out


@pytest.mark.parametrize("row", _params())
def test_manifest_row_has_defined_outcome(corpus: Path, row: dict[str, str]) -> None:
    relpath = row["relpath"]
    match = re.search(r"\[password: ([^\]]+)\]", row["what_it_exercises"])
    settings = Settings(password=match.group(1) if match else None, slide_timeout_s=SLIDE_TIMEOUT_S)
    expected_error = EXPECTED_ERRORS.get(relpath)
    if expected_error is None:
        assert row["pages"].isdigit() and int(row["pages"]) > 0, (
            f"{relpath}: no defined outcome in this test"
        )
        with load_document(corpus / relpath, settings) as doc:
            assert doc.page_count == int(row["pages"])
            assert [p.page for p in doc.pages] == list(range(1, doc.page_count + 1))
            assert all(p.width_pt > 0 and p.height_pt > 0 for p in doc.pages)
            assert len(doc.sha256) == 64
            if doc.workdir is not None:
                assert doc.render_path.is_file() and doc.workdir in doc.render_path.parents
    else:
        with pytest.raises(DocvlError) as info:
            load_document(corpus / relpath, settings)
        assert info.value.code == expected_error, info.value.message
        assert info.value.message


def test_expected_errors_are_manifest_rows() -> None:
    assert set(EXPECTED_ERRORS) <= {row["relpath"] for row in manifest_rows()}


# --- passwords ------------------------------------------------------------------------------------


def test_encrypted_pdf_password_paths(corpus: Path) -> None:
    path = corpus / "bad/encrypted_user_password_1234.pdf"
    with pytest.raises(PasswordRequired):
        load_document(path, Settings())
    with pytest.raises(WrongPassword):
        load_document(path, Settings(password="4321"))
    doc = load_document(path, Settings(password="1234"))
    assert doc.page_count == 1 and doc.password == "1234"
    assert doc.pages[0].has_text_layer


def test_saslprep_rfc4013_examples() -> None:
    assert saslprep("I\u00adX") == "IX"  # soft hyphen mapped to nothing
    assert saslprep("user") == "user"
    assert saslprep("USER") == "USER"
    assert saslprep("\u00aa") == "a"  # NFKC
    assert saslprep("\u2168") == "IX"  # ROMAN NUMERAL NINE
    assert saslprep("a\u00a0b") == "a b"  # non-ASCII space -> space
    for bad in ("\u0007", "\u0627\u0031"):  # control character; RTL not ending in RTL
        with pytest.raises(ValueError):
            saslprep(bad)
    assert password_candidates("\u0007x") == ["\u0007x"]


def test_aes256_unicode_password_needs_saslprep(tmp_path: Path) -> None:
    stored = unicodedata.normalize(
        "NFC", "p\u00e4ssw\u00f6rt"
    )  # what the author's tool stored (SASLprep form)
    typed = unicodedata.normalize("NFD", stored)  # what a macOS keyboard may deliver
    assert typed != stored
    src = pymupdf.open()
    src.new_page().insert_text((72, 72), "Secret quarterly numbers")
    path = tmp_path / "aes256.pdf"
    src.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=stored, owner_pw="owner-pw")
    src.close()
    raw = pymupdf.open(path)
    assert raw.needs_pass and not raw.authenticate(
        typed
    )  # the library alone refuses the typed form
    raw.close()
    doc = load_document(path, Settings(password=typed))
    assert doc.page_count == 1 and doc.password == stored
    assert "Secret quarterly numbers" in doc.pages[0].text
    with pytest.raises(WrongPassword):
        load_document(path, Settings(password="passwort"))


# --- warnings and text layers ---------------------------------------------------------------------


def test_document_warnings(corpus: Path) -> None:
    js = load_document(corpus / "bad/javascript_document_actions.pdf", Settings())
    assert any("JavaScript" in w and "never executed" in w for w in js.warnings)
    assert any("form" in w for w in js.warnings)
    perms = load_document(corpus / "bad/permissions_only_copy_protected.pdf", Settings())
    assert any("permissions restrict" in w and "copying text" in w for w in perms.warnings)
    header = load_document(corpus / "bad/missing_pdf_header.pdf", Settings())
    assert header.page_count == 1
    assert any("'%PDF-' header" in w for w in header.warnings)
    clean = load_document(corpus / "good/tracemonkey_paper.pdf", Settings())
    assert not any("JavaScript" in w or "permissions" in w for w in clean.warnings)


def test_form_values_are_page_text(corpus: Path) -> None:
    doc = load_document(corpus / "good/irs_f1040_prefilled_2p.pdf", Settings())
    assert "Form fields:" in doc.pages[1].text and "foobar" in doc.pages[1].text


def test_text_layer_flags(corpus: Path) -> None:
    for rel in (
        "scanned/lincoln_letter_handwritten.pdf",
        "scanned/phone_photo_attendance_form.pdf",
        "scanned/scanned_table_form_2p.pdf",
        "scanned/handwritten_notes_photo.pdf",
    ):
        doc = load_document(corpus / rel, Settings())
        assert not any(p.has_text_layer for p in doc.pages), rel
    for rel in (
        "good/tracemonkey_paper.pdf",
        "scanned/book_scan_with_ocr_layer_6p.pdf",
        "good/arabic_rtl_1p.pdf",
    ):
        doc = load_document(corpus / rel, Settings())
        assert all(p.has_text_layer for p in doc.pages), rel
    book = load_document(corpus / "good/freeculture_book_352p.pdf", Settings())
    assert not book.pages[0].has_text_layer  # image-only cover
    assert sum(p.has_text_layer for p in book.pages) > 330


def test_rotated_geometry_is_after_rotate(corpus: Path) -> None:
    doc = load_document(corpus / "good/wikipedia_rotated90.pdf", Settings())
    assert (doc.pages[0].width_pt, doc.pages[0].height_pt) == (792.0, 612.0)
    a0 = load_document(corpus / "bad/huge_page_A0_rotated.pdf", Settings())
    assert (a0.pages[0].width_pt, a0.pages[0].height_pt) == (3370.0, 2384.0)


def test_markdown_never_reaches_pymupdf(corpus: Path) -> None:
    with pytest.raises(UnsupportedFormat):
        load_document(corpus / "bad/not_a_pdf_markdown.pdf", Settings())


def test_samples_load(samples: Path) -> None:
    invoice = load_document(samples / "invoice.pdf", Settings())
    assert invoice.page_count == 1 and "INV-2024-0173" in invoice.pages[0].text
    report = load_document(samples / "report.pdf", Settings())
    assert report.page_count == 5 and all(p.has_text_layer for p in report.pages)


# --- images ---------------------------------------------------------------------------------------


def test_image_one_page_pixels_after_exif(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    Image.new("RGB", (400, 300), (10, 120, 200)).save(path, format="JPEG", exif=exif)
    doc = load_document(path, Settings())
    assert doc.kind is DocKind.IMAGE and doc.page_count == 1 and doc.render_path == path
    assert (doc.pages[0].width_pt, doc.pages[0].height_pt) == (300.0, 400.0)
    assert not doc.pages[0].has_text_layer


def test_truncated_image_is_corrupt(tmp_path: Path) -> None:
    full = tmp_path / "full.png"
    Image.effect_noise((300, 300), 60).convert("RGB").save(full)
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[:2000])
    with pytest.raises(DocvlError) as info:
        load_document(cut, Settings())
    assert info.value.code == "corrupt_document"
