from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from docvl.pipeline.errors import (
    CorruptDocument,
    DocvlError,
    EmptyFile,
    UnsupportedFormat,
    UsageError,
)
from docvl.pipeline.ingest.document import DocKind
from docvl.pipeline.ingest.sniff import OLE_MAGIC, sniff, sniff_details


@pytest.mark.parametrize(
    ("relpath", "kind"),
    [
        ("good/tracemonkey_paper.pdf", DocKind.PDF),
        ("bad/huge_page_A0_rotated.pdf", DocKind.PDF),
        ("bad/truncated_mid_stream.pdf", DocKind.PDF),
        ("bad/fuzzed_unopenable.pdf", DocKind.PDF),
        ("slides/docling_powerpoint_sample_3s.pptx", DocKind.PPTX),
        ("bad/zero_slides.pptx", DocKind.PPTX),
    ],
)
def test_corpus_kinds(corpus: Path, relpath: str, kind: DocKind) -> None:
    assert sniff(corpus / relpath) is kind


def test_missing_header_is_pdf_with_note(corpus: Path) -> None:
    result = sniff_details(corpus / "bad/missing_pdf_header.pdf")
    assert result.kind is DocKind.PDF
    assert any("header" in note for note in result.notes)


def test_markdown_named_pdf_is_unsupported(corpus: Path) -> None:
    with pytest.raises(UnsupportedFormat, match="Markdown"):
        sniff(corpus / "bad/not_a_pdf_markdown.pdf")


def test_empty_file(corpus: Path) -> None:
    with pytest.raises(EmptyFile):
        sniff(corpus / "bad/empty_0_bytes.pdf")


def test_truncated_pptx_is_corrupt(corpus: Path) -> None:
    with pytest.raises(CorruptDocument, match="truncated"):
        sniff(corpus / "bad/truncated_no_central_directory.pptx")


def test_content_not_extension(tmp_path: Path, corpus: Path) -> None:
    disguised = tmp_path / "slides.pdf"
    disguised.write_bytes((corpus / "slides/docling_pptx_chart_2s.pptx").read_bytes())
    assert sniff(disguised) is DocKind.PPTX
    pdf_as_txt = tmp_path / "notes.txt"
    pdf_as_txt.write_bytes((corpus / "good/invoice.pdf").read_bytes())
    assert sniff(pdf_as_txt) is DocKind.PDF


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP"])
def test_images(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "image.bin"
    Image.new("RGB", (20, 10), (200, 10, 10)).save(path, format=fmt)
    assert sniff(path) is DocKind.IMAGE


def test_gif_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "a.gif"
    Image.new("RGB", (4, 4)).save(path, format="GIF")
    with pytest.raises(UnsupportedFormat, match="GIF"):
        sniff(path)


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_docx_and_plain_zip_are_unsupported(tmp_path: Path) -> None:
    docx = tmp_path / "a.pptx"
    docx.write_bytes(_zip({"[Content_Types].xml": b"<x/>", "word/document.xml": b"<w/>"}))
    with pytest.raises(UnsupportedFormat, match="Word"):
        sniff(docx)
    plain = tmp_path / "b.pptx"
    plain.write_bytes(_zip({"readme.txt": b"hello"}))
    with pytest.raises(UnsupportedFormat, match="zip"):
        sniff(plain)


def test_truncated_synthetic_pptx_is_corrupt(tmp_path: Path) -> None:
    data = _zip({"[Content_Types].xml": b"<x/>" * 50, "ppt/presentation.xml": b"<p/>" * 500})
    path = tmp_path / "cut.pptx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDocument):
        sniff(path)


def test_ole_powerpoint_and_other_ole(tmp_path: Path) -> None:
    ppt = tmp_path / "old.ppt"
    ppt.write_bytes(
        OLE_MAGIC + b"\0" * 504 + "PowerPoint Document".encode("utf-16-le") + b"\0" * 64
    )
    assert sniff(ppt) is DocKind.PPT
    doc = tmp_path / "old.doc"
    doc.write_bytes(OLE_MAGIC + b"\0" * 504 + "WordDocument".encode("utf-16-le") + b"\0" * 64)
    with pytest.raises(UnsupportedFormat, match="Word"):
        sniff(doc)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        sniff(tmp_path / "nope.pdf")
    with pytest.raises(UsageError):
        sniff(tmp_path)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(min_size=0, max_size=2048))
def test_arbitrary_bytes_never_crash(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.pdf"
    path.write_bytes(data)
    with contextlib.suppress(DocvlError):
        assert isinstance(sniff(path), DocKind)
