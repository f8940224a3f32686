"""Open a document (by content), check it, and collect per-page geometry and text.

``load_document`` never returns a half-usable document and never lets a library exception out: bad
input becomes one of the typed errors of :mod:`docvl.pipeline.errors`.

Passwords: ``settings.password`` is tried as given, then SASLprep-normalised (RFC 4013), which is
what AES-256 (PDF 2.0, R6) requires: a password typed in decomposed form (``"pa\\u0308sswort"``) or
with a no-break space only authenticates after normalisation. The password that worked is kept on
the ``LoadedDocument`` so the renderer (and poppler) can reopen the file.
"""

from __future__ import annotations

import hashlib
import stringprep
import unicodedata
import warnings as pywarnings
from pathlib import Path

import pymupdf
from PIL import Image

from docvl.pipeline.errors import (
    CorruptDocument,
    DocvlError,
    EmptyDocument,
    FileTooLarge,
    InternalError,
    PasswordRequired,
    TooManyPages,
    TooManyPixels,
    UnsupportedFormat,
    WrongPassword,
)
from docvl.pipeline.ingest import textlayer, textworker
from docvl.pipeline.ingest.document import DocKind, LoadedDocument, PageInfo
from docvl.pipeline.ingest.raster import MUPDF_ERRORS, open_pdf_file
from docvl.pipeline.ingest.slides import load_slides
from docvl.pipeline.ingest.sniff import sniff_details
from docvl.pipeline.ingest.textlayer import clean_text
from docvl.pipeline.ingest.textworker import PendingLayer
from docvl.pipeline.settings import Settings

# MuPDF prints its errors to stdout, which would corrupt `--json` and JSONL output; its messages
# stay in the warning store instead (load copies them into the document's warnings).
pymupdf.TOOLS.mupdf_display_errors(False)  # type: ignore[no-untyped-call]
pymupdf.TOOLS.mupdf_display_warnings(False)  # type: ignore[no-untyped-call]


def load_document(path: Path, settings: Settings, *, defer_text: bool = False) -> LoadedDocument:
    """Sniff ``path`` by content and load it as a PDF, slide deck or image.

    Every exception is this document's typed error (per-document isolation): a ``DocvlError`` as
    raised, anything else an :class:`InternalError` naming the exception's type and message.
    Messages and warnings are made encodable (:func:`clean_text`).

    A PDF's text layer is extracted by the text worker (:mod:`textworker`) while this process
    checks the file. ``defer_text``: return without waiting for it, so that rendering (which needs
    only ``geometry``) runs concurrently; ``pages``/``warnings``/``join()`` then wait and raise the
    document's typed error if the extraction failed. Otherwise the text is joined here."""
    path = Path(path)
    try:
        doc = _load(path, settings)
        doc.map_warnings(clean_text)
        if not defer_text:
            doc.join()
    except DocvlError as exc:
        exc.message = clean_text(exc.message)
        exc.args = (exc.message,)
        raise
    except Exception as exc:
        raise InternalError(
            clean_text(f"{path.name}: {type(exc).__name__}: {exc}"), page=None
        ) from exc
    return doc


def _load(path: Path, settings: Settings) -> LoadedDocument:
    sniffed = sniff_details(path)
    size = path.stat().st_size
    if size > settings.max_file_bytes:
        raise FileTooLarge(
            f"{path.name}: {size:,} bytes, over the cap of {settings.max_file_bytes:,} "
            "(DOCVL_MAX_FILE_BYTES)"
        )
    digest = file_sha256(path)
    if sniffed.kind is DocKind.PDF:
        doc = load_pdf(path, settings, digest)
    elif sniffed.kind is DocKind.IMAGE:
        doc = load_image(path, digest, settings)
    else:
        doc = load_slides(path, sniffed.kind, settings, digest)
    doc.add_warnings(sniffed.notes, first=True)
    return doc


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- PDF ------------------------------------------------------------------------------------------


def load_pdf(path: Path, settings: Settings, digest: str) -> LoadedDocument:
    """Open, authenticate and check a PDF; its text layer comes from the text worker when it is
    free (the document then carries it as pending), else it is read here."""
    textworker.mupdf_lines()
    doc, password = open_pdf(path, settings.password)
    pending: PendingLayer | None = None
    try:
        count = doc.page_count
        if count == 0:
            raise EmptyDocument(
                f"{path.name}: the PDF has no pages (truncated or damaged beyond repair)"
            )
        if count > settings.max_pages:
            raise TooManyPages(
                f"{path.name}: {count:,} pages, over the cap of {settings.max_pages} "
                "(DOCVL_MAX_PAGES)"
            )
        pending = textworker.submit(path, password, settings)
        check_page_pixels(doc, settings.page_pixel_cap(), path.name)
        if pending is None:
            pages, warnings = textlayer.read_layer(doc)
            if doc.is_repaired:
                warnings.insert(0, textworker.REPAIRED)
        else:  # MuPDF's messages as a serial load has them: loading the pages is the worker's
            pending.main_lines = textworker.mupdf_lines()
            pages, warnings = textlayer.page_sizes(doc), []
            pending.main_repaired = bool(doc.is_repaired)
            textworker.mupdf_lines()
    except BaseException as exc:
        if pending is not None:
            pending.cancel()
        if isinstance(exc, MUPDF_ERRORS) and not isinstance(exc, DocvlError):
            raise CorruptDocument(
                f"{path.name}: the PDF cannot be read ({type(exc).__name__}: {exc})"
            ) from exc
        raise
    finally:
        doc.close()  # type: ignore[no-untyped-call]
    if pending is None:
        warnings += textworker.mupdf_warnings(textworker.mupdf_lines())
    return LoadedDocument(
        path=path,
        kind=DocKind.PDF,
        sha256=digest,
        render_path=path,
        pages=pages,
        warnings=warnings,
        password=password,
        pending=pending,
    )


def check_page_pixels(doc: pymupdf.Document, max_pixels: int, name: str) -> None:
    """Refuse a page whose images together declare more than ``max_pixels`` (read from the image
    dictionaries, nothing decoded): MuPDF would decode them at full size to render the page."""
    for index in range(doc.page_count):
        seen: set[int] = set()
        total = 0
        try:
            infos = doc.get_page_images(index)
        except TypeError as exc:  # PyMuPDF cannot even warn about a name it cannot encode
            raise CorruptDocument(
                f"{name}: page {index + 1}: its image resources cannot be read ({exc})",
                page=index + 1,
            ) from exc
        for info in infos:
            xref, width, height = int(info[0]), int(info[2]), int(info[3])
            if xref in seen:
                continue
            seen.add(xref)
            total += max(width, 0) * max(height, 0)
        if total > max_pixels:
            raise TooManyPixels(
                f"{name}: page {index + 1} draws images of {total:,} pixels, over the cap of "
                f"{max_pixels:,} (DOCVL_MAX_PAGE_PIXELS)",
                page=index + 1,
            )


def open_pdf(path: Path, password: str | None) -> tuple[pymupdf.Document, str | None]:
    """Open and authenticate a PDF. Returns the document and the password that worked (or None)."""
    try:
        doc = open_pdf_file(path)
    except pymupdf.EmptyFileError as exc:
        raise CorruptDocument(f"{path.name}: MuPDF sees no PDF data ({exc})") from exc
    except Exception as exc:
        raise CorruptDocument(
            f"{path.name}: cannot be opened as a PDF ({type(exc).__name__}: {exc})"
        ) from exc
    try:
        if not doc.is_pdf:
            fmt = (doc.metadata or {}).get("format")
            raise UnsupportedFormat(f"{path.name}: not a PDF (MuPDF reads it as {fmt!r})")
        if not doc.needs_pass:
            return doc, None
        if password is None:
            raise PasswordRequired(
                f"{path.name}: the PDF is encrypted; give its password (DOCVL_PASSWORD)"
            )
        for candidate in password_candidates(password):
            if doc.authenticate(candidate):  # type: ignore[no-untyped-call]
                return doc, candidate
        raise WrongPassword(f"{path.name}: the password does not open this PDF")
    except BaseException:
        doc.close()  # type: ignore[no-untyped-call]
        raise


def password_candidates(password: str) -> list[str]:
    """The password as given, then its SASLprep form when that differs and is valid."""
    out = [password]
    try:
        prepped = saslprep(password)
    except ValueError:
        return out
    if prepped != password:
        out.append(prepped)
    return out


def saslprep(value: str) -> str:
    """RFC 4013 SASLprep (stringprep profile, query mode: unassigned code points allowed).

    Raises ValueError on prohibited characters or a bidi violation.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in value if not stringprep.in_table_b1(c)
    )
    result = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    for ch in result:
        if any(table(ch) for table in prohibited):
            raise ValueError(f"SASLprep: prohibited character U+{ord(ch):04X}")
    if any(stringprep.in_table_d1(ch) for ch in result):
        if any(stringprep.in_table_d2(ch) for ch in result):
            raise ValueError("SASLprep: mixes right-to-left and left-to-right characters")
        if not (stringprep.in_table_d1(result[0]) and stringprep.in_table_d1(result[-1])):
            raise ValueError("SASLprep: right-to-left text must start and end with RTL characters")
    return result


# --- images ---------------------------------------------------------------------------------------


def load_image(path: Path, digest: str, settings: Settings) -> LoadedDocument:
    """One page; width/height are the pixel size after EXIF orientation (see ``tokens.page_pixels``:
    images use scale 1). The declared size and frame count are checked against the caps before
    anything is decoded; PIL's decompression-bomb guard stays on."""
    warnings: list[str] = []
    try:
        with pywarnings.catch_warnings(record=True) as caught:
            pywarnings.simplefilter("always", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > settings.page_pixel_cap():
                    raise TooManyPixels(
                        f"{path.name}: the image declares {width}x{height} pixels, over the cap "
                        f"of {settings.page_pixel_cap():,} (DOCVL_MAX_PAGE_PIXELS)",
                        page=1,
                    )
                frames = getattr(im, "n_frames", 1)
                if frames > settings.max_pages:
                    raise TooManyPages(
                        f"{path.name}: the image has {frames:,} frames, over the cap of "
                        f"{settings.max_pages} (DOCVL_MAX_PAGES)"
                    )
                orientation = im.getexif().get(0x0112, 1)
                if orientation in (5, 6, 7, 8):
                    width, height = height, width
                # decode the first frame now: a truncated image fails here, not mid-render
                im.load()
        warnings += [
            f"image: {w.message}"
            for w in caught
            if issubclass(w.category, Image.DecompressionBombWarning)
        ]
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(
            f"{path.name}: refused by the decompression-bomb guard ({exc})", page=1
        ) from exc
    except DocvlError:
        raise
    except Exception as exc:
        raise CorruptDocument(
            f"{path.name}: the image cannot be decoded ({type(exc).__name__}: {exc})"
        ) from exc
    if frames > 1:
        warnings.append(f"image has {frames} frames; only the first is used")
    page = PageInfo(
        page=1, width_pt=float(width), height_pt=float(height), text="", has_text_layer=False
    )
    return LoadedDocument(
        path=path,
        kind=DocKind.IMAGE,
        sha256=digest,
        render_path=path,
        pages=[page],
        warnings=warnings,
    )
