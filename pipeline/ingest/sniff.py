"""Decide what a file is from its bytes, never from its name.

=====================  ==========================================================================
content                result
=====================  ==========================================================================
zero bytes             :class:`EmptyFile`
``%PDF-`` in the       ``DocKind.PDF``
first 1024 bytes
PDF objects but no     ``DocKind.PDF`` with a note (``Sniffed.notes``): a header without ``PDF-1.x``
``%PDF-`` header       (corpus ``bad/missing_pdf_header.pdf``) is still a PDF to MuPDF, which
                       repairs it; the loader accepts it and turns the note into a document warning.
zip with               ``DocKind.PPTX`` (also .pptm/.ppsx/.potx packages: LibreOffice converts them)
``ppt/presentation.xml``
zip we cannot read     :class:`CorruptDocument` when its local headers name ``ppt/`` parts (a
                       truncated deck), else :class:`UnsupportedFormat`
OLE2 with a            ``DocKind.PPT`` (legacy PowerPoint 97-2003)
``PowerPoint Document``
stream
PNG, JPEG, TIFF, WebP  ``DocKind.IMAGE``
anything else          :class:`UnsupportedFormat` (Markdown named ``.pdf``, DOCX, XLS, GIF, ...)
=====================  ==========================================================================
"""

from __future__ import annotations

import codecs
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from docvl.pipeline.errors import CorruptDocument, EmptyFile, UnsupportedFormat, UsageError
from docvl.pipeline.ingest.document import DocKind

HEAD_BYTES = 1024
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
PPT_STREAM = "PowerPoint Document".encode("utf-16-le")
#: Bytes scanned for an OLE2 directory entry (directories of real decks sit well inside this).
OLE_SCAN_LIMIT = 64 * 1024 * 1024

_PDF_OBJ = re.compile(rb"\d{1,10}\s+\d{1,5}\s+obj\b")
_PDF_TAIL_MARKERS = (b"%%EOF", b"startxref", b"trailer", b"xref")


@dataclass(frozen=True)
class Sniffed:
    kind: DocKind
    #: Human-readable remarks the loader turns into document warnings.
    notes: list[str] = field(default_factory=list)


def sniff(path: Path) -> DocKind:
    """The kind of document ``path`` holds, decided by content. Raises typed errors for the rest."""
    return sniff_details(path).kind


def sniff_details(path: Path) -> Sniffed:
    try:
        size = path.stat().st_size
        if not path.is_file():  # a FIFO or device is never opened: reading one could hang
            raise UsageError(f"{path}: not a regular file (a directory, FIFO or device)")
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
            fh.seek(max(0, size - HEAD_BYTES))
            tail = fh.read(HEAD_BYTES)
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: no such file") from exc
    except PermissionError as exc:
        raise UsageError(f"{path}: permission denied") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"{path}: is a directory, not a document") from exc
    except OSError as exc:  # a symlink loop, a name too long, an I/O error
        raise UsageError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise EmptyFile(f"{path.name}: the file is empty (0 bytes)")

    if b"%PDF-" in head:
        return Sniffed(DocKind.PDF)
    if head.startswith(ZIP_MAGICS):
        return Sniffed(_sniff_zip(path, head))
    if head.startswith(OLE_MAGIC):
        return Sniffed(_sniff_ole(path))
    image = _image_kind(head)
    if image is not None:
        return Sniffed(DocKind.IMAGE)
    if _PDF_OBJ.search(head) and any(m in tail for m in _PDF_TAIL_MARKERS):
        return Sniffed(
            DocKind.PDF,
            [
                "no '%PDF-' header: the file has PDF objects and a trailer, so it is read as a PDF "
                "(MuPDF repairs it); check the result"
            ],
        )
    raise UnsupportedFormat(
        f"{path.name}: {_describe(head)}; docvl reads PDF, PPTX, PPT, PNG, JPEG, TIFF and WebP"
    )


def _image_kind(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    return None


def _sniff_zip(path: Path, head: bytes) -> DocKind:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        if b"ppt/" in _local_header_names(path):
            raise CorruptDocument(
                f"{path.name}: PowerPoint package is truncated or damaged (zip unreadable: {exc})"
            ) from exc
        raise UnsupportedFormat(
            f"{path.name}: an unreadable zip archive, not a PowerPoint deck"
        ) from exc
    if "ppt/presentation.xml" in names:
        return DocKind.PPTX
    if any(n.startswith("ppt/") for n in names):
        raise CorruptDocument(f"{path.name}: PowerPoint package without ppt/presentation.xml")
    if "word/document.xml" in names:
        raise UnsupportedFormat(f"{path.name}: a Word document (DOCX); convert it to PDF first")
    if "xl/workbook.xml" in names:
        raise UnsupportedFormat(f"{path.name}: an Excel workbook (XLSX); convert it to PDF first")
    raise UnsupportedFormat(f"{path.name}: a zip archive that is not a PowerPoint deck")


def _local_header_names(path: Path, limit: int = 4 * 1024 * 1024) -> bytes:
    """File names from the zip local headers in the first ``limit`` bytes (works without a central
    directory, i.e. on truncated archives). Returned joined with newlines."""
    with path.open("rb") as fh:
        data = fh.read(limit)
    names: list[bytes] = []
    pos = data.find(b"PK\x03\x04")
    while pos != -1 and pos + 30 <= len(data) and len(names) < 2000:
        name_len = int.from_bytes(data[pos + 26 : pos + 28], "little")
        names.append(data[pos + 30 : pos + 30 + name_len])
        pos = data.find(b"PK\x03\x04", pos + 30 + name_len)
    return b"\n".join(names)


def _sniff_ole(path: Path) -> DocKind:
    """OLE2 compound file: PowerPoint 97-2003 when a directory entry names 'PowerPoint Document'."""
    chunk = 1024 * 1024
    overlap = len(PPT_STREAM)
    seen = 0
    prev = b""
    with path.open("rb") as fh:
        while seen < OLE_SCAN_LIMIT:
            block = fh.read(chunk)
            if not block:
                break
            if PPT_STREAM in prev[-overlap:] + block:
                return DocKind.PPT
            seen += len(block)
            prev = block
            if b"W\x00o\x00r\x00d\x00D\x00o\x00c\x00u\x00m\x00e\x00n\x00t\x00" in block:
                raise UnsupportedFormat(
                    f"{path.name}: a legacy Word document (.doc); convert it to PDF first"
                )
            if b"W\x00o\x00r\x00k\x00b\x00o\x00o\x00k\x00" in block:
                raise UnsupportedFormat(
                    f"{path.name}: a legacy Excel workbook (.xls); convert it to PDF first"
                )
    raise UnsupportedFormat(
        f"{path.name}: an OLE2 compound file that is not a PowerPoint presentation"
    )


def _describe(head: bytes) -> str:
    if head.startswith(b"GIF8"):
        return "a GIF image (not supported)"
    if head.startswith(b"BM"):
        return "possibly a BMP image (not supported)"
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "unrecognised binary content"
    first = text.strip().splitlines()[0][:60] if text.strip() else ""
    if first.startswith("#"):
        return f"plain text that looks like Markdown ({first!r}), not a PDF"
    if first.lower().startswith(("<!doctype html", "<html")):
        return "an HTML page, not a document"
    return f"plain text ({first!r}), not a document"
