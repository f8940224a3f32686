"""PowerPoint decks (.pptx and legacy .ppt): LibreOffice makes the PDF we render, python-pptx gives
the text.

* Conversion: ``soffice --headless --convert-to pdf`` with a fresh profile directory per conversion
  (two runs sharing a profile fail silently), in its own process group, killed as a group when it
  runs past ``settings.slide_timeout_s``. Hidden slides are exported too (``ExportHiddenSlides``),
  so page N of the PDF is always slide N of the deck; the loader warns which slides are hidden.
* Text (.pptx): per slide, every shape's text, tables as ``a | b | c`` rows, chart series, picture
  alt text, then ``Notes: ...`` from the speaker notes. Errors are isolated per shape: a shape that
  python-pptx cannot classify (``NotImplementedError``) or a 3-D chart (``ValueError``) becomes a
  warning naming the slide and shape.
* Text (.ppt, or a .pptx python-pptx cannot parse but LibreOffice can): from the converted PDF,
  with its word boxes (``PageInfo.words``); python-pptx text has none.
* Geometry always comes from the converted PDF.
* Security and budgets (:mod:`docvl.pipeline.ingest.sandbox`): a .pptx is staged without its
  external links (zip-bomb, picture-size and slide-count caps checked while copying); soffice runs
  with a locked profile (no macros, no linked content), no network and an address-space limit.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pymupdf
from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE_TYPE
from pptx.exc import PackageNotFoundError

from docvl.pipeline.errors import (
    ConversionFailed,
    ConversionOutOfMemory,
    ConversionTimeout,
    CorruptDocument,
    EmptyDocument,
    TooManyPages,
)
from docvl.pipeline.ingest.document import NO_WORDS, DocKind, LoadedDocument, PageInfo
from docvl.pipeline.ingest.sandbox import (
    address_space_limited,
    run_in_group,
    sandbox_prefix,
    stage_pptx,
    write_profile,
)
from docvl.pipeline.ingest.textlayer import text_and_words, text_is_usable
from docvl.pipeline.settings import Settings

PDF_FILTER = 'pdf:impress_pdf_Export:{"ExportHiddenSlides":{"type":"boolean","value":"true"}}'
#: Exit statuses of a LibreOffice that died of its address-space limit (abort/kill/segfault, raw or
#: through the soffice shell script).
OOM_EXITS = frozenset({-6, -9, -11, 134, 137, 139})
#: What it prints when the limit stops it (an allocation, or mapping its own libraries).
OOM_MARKS = (b"bad_alloc", b"failed to map segment", b"Fatal exception")
#: A failed conversion whose address-space peak reached this share of the limit ran out of it.
OOM_PEAK_SHARE = 0.9
INSTALL_HINT = (
    "install LibreOffice Impress (apt-get install -y --no-install-recommends libreoffice-impress)"
)


def load_slides(path: Path, kind: DocKind, settings: Settings, digest: str) -> LoadedDocument:
    """Convert a deck to PDF (inside a workdir the returned document owns) and collect its pages."""
    warnings: list[str] = []
    texts: list[tuple[str, bool]] | None = None
    workdir = Path(tempfile.mkdtemp(prefix="docvl-slides-"))
    try:
        staged = workdir / ("input.pptx" if kind is DocKind.PPTX else "input.ppt")
        if kind is DocKind.PPTX:  # links broken and budgets checked before anything reads it
            warnings += stage_pptx(path, staged, settings)
            texts = pptx_slide_texts(staged, warnings, path.name)
        else:
            _link_or_copy(path, staged)
        pdf = convert_to_pdf(staged, path.name, workdir, settings)
        pages = _pages_from_pdf(pdf, texts, warnings, path.name, settings.max_pages)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return LoadedDocument(
        path=path,
        kind=kind,
        sha256=digest,
        render_path=pdf,
        pages=pages,
        warnings=warnings,
        workdir=workdir,
    )


# --- text from python-pptx ------------------------------------------------------------------------


def pptx_slide_texts(
    path: Path, warnings: list[str], name: str | None = None
) -> list[tuple[str, bool]] | None:
    """(text, has_text_layer) per slide, or None when python-pptx cannot parse the deck (then the
    PDF text is used). ``has_text_layer`` judges the slide's own text only: picture alt text (often
    machine-generated) and speaker notes do not make an image-only slide a text slide. ``name``: the
    file name errors show (``path`` may be a staged copy)."""
    name = name or path.name
    try:
        prs = Presentation(str(path))
        slides = list(prs.slides)
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, EOFError) as exc:
        raise CorruptDocument(
            f"{name}: the PowerPoint package is damaged ({type(exc).__name__}: {exc})"
        ) from exc
    except Exception as exc:
        warnings.append(
            f"python-pptx cannot read the deck ({type(exc).__name__}: {exc}); "
            "slide text comes from the converted PDF"
        )
        return None
    if not slides:
        raise EmptyDocument(f"{name}: the presentation has no slides")
    texts: list[tuple[str, bool]] = []
    hidden: list[int] = []
    for number, slide in enumerate(slides, 1):
        if slide._element.get("show") in ("0", "false"):
            hidden.append(number)
        parts: list[str] = []
        for shape in slide.shapes:
            parts += _shape_texts(shape, number, warnings)
        body = "\n".join(p for p in parts if p.strip() and not p.startswith("[Image: "))
        notes = _notes_text(slide, number, warnings)
        if notes:
            parts.append("Notes: " + notes)
        texts.append(("\n".join(p for p in parts if p.strip()), text_is_usable(body)))
    if hidden:
        warnings.append("hidden slides included: " + ", ".join(map(str, hidden)))
    return texts


def _shape_texts(shape: Any, slide_no: int, warnings: list[str]) -> list[str]:
    label = (
        f"slide {slide_no}, shape {getattr(shape, 'shape_id', '?')} {getattr(shape, 'name', '')!r}"
    )
    out: list[str] = []
    try:
        if shape.has_text_frame and shape.text_frame.text.strip():
            out.append(shape.text_frame.text.strip())
    except Exception as exc:
        warnings.append(f"{label}: text unreadable ({type(exc).__name__}: {exc}); skipped")
    try:
        if getattr(shape, "has_table", False) and shape.has_table:
            out.append(_table_text(shape.table))
        elif getattr(shape, "has_chart", False) and shape.has_chart:
            out.append(_chart_text(shape.chart))
        else:
            shape_type = shape.shape_type  # raises NotImplementedError for unknown shapes
            if shape_type == MSO_SHAPE_TYPE.GROUP:
                for sub in shape.shapes:
                    out += _shape_texts(sub, slide_no, warnings)
            elif shape_type == MSO_SHAPE_TYPE.PICTURE:
                alt = _alt_text(shape._element._nvXxPr.cNvPr.get("descr") or "")
                if alt:
                    out.append(f"[Image: {alt}]")
    except Exception as exc:
        warnings.append(f"{label}: {type(exc).__name__}: {exc}; only its text was kept")
    return out


def _alt_text(descr: str) -> str:
    """Picture alt text on one line, without Office's 'Description generated with ...
    confidence'."""
    lines = [ln.strip() for ln in descr.splitlines()]
    return " ".join(ln for ln in lines if ln and not ln.startswith("Description generated with"))


def _table_text(table: Any) -> str:
    rows = []
    for row in table.rows:
        cells = [" ".join(cell.text.split()) for cell in row.cells]
        rows.append(" | ".join(cells))
    return "\n".join(rows)


def _chart_text(chart: Any) -> str:
    lines = []
    if chart.has_title and chart.chart_title.has_text_frame:
        lines.append("Chart: " + chart.chart_title.text_frame.text.strip())
    else:
        lines.append("Chart:")
    for plot in chart.plots:
        categories = [str(c) for c in plot.categories]
        for series in plot.series:
            values = list(series.values)
            if categories and len(categories) == len(values):
                pairs = ", ".join(f"{c}={_num(v)}" for c, v in zip(categories, values, strict=True))
            else:
                pairs = ", ".join(_num(v) for v in values)
            lines.append(f"{series.name}: {pairs}")
    return "\n".join(lines)


def _num(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def _notes_text(slide: Any, slide_no: int, warnings: list[str]) -> str:
    try:
        if not slide.has_notes_slide:
            return ""
        frame = slide.notes_slide.notes_text_frame
        return " ".join(frame.text.split()) if frame is not None else ""
    except Exception as exc:
        warnings.append(f"slide {slide_no}: speaker notes unreadable ({type(exc).__name__}: {exc})")
        return ""


# --- conversion -----------------------------------------------------------------------------------


def find_soffice() -> str:
    exe = shutil.which("soffice") or shutil.which("libreoffice")
    if exe is None:
        raise ConversionFailed(f"LibreOffice (soffice) is not on PATH: {INSTALL_HINT}")
    return exe


def _link_or_copy(src: Path, staged: Path) -> None:
    try:
        staged.symlink_to(src.resolve())
    except OSError:
        shutil.copyfile(src, staged)


def convert_to_pdf(staged: Path, name: str, workdir: Path, settings: Settings) -> Path:
    """Convert the staged deck to ``workdir/out/<stem>.pdf`` in the sandbox of
    :mod:`docvl.pipeline.ingest.sandbox` (locked fresh profile, no network, memory limit); the
    process group is killed past ``settings.slide_timeout_s``."""
    exe = find_soffice()
    timeout_s = settings.slide_timeout_s
    profile = workdir / "lo-profile"
    write_profile(profile)
    outdir = workdir / "out"
    cmd = [
        *sandbox_prefix(settings),
        exe,
        f"-env:UserInstallation={profile.as_uri()}",
        "--headless",
        "--norestore",
        "--nolockcheck",
        "--convert-to",
        PDF_FILTER,
        "--outdir",
        str(outdir),
        str(staged),
    ]
    try:
        done = run_in_group(cmd, timeout_s)
    except OSError as exc:
        raise ConversionFailed(f"cannot start LibreOffice ({exc}): {INSTALL_HINT}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ConversionTimeout(
            f"{name}: LibreOffice did not finish within {timeout_s:g} s (DOCVL_SLIDE_TIMEOUT_S)"
        ) from exc
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    pdf = outdir / (staged.stem + ".pdf")
    if done.returncode == 0 and pdf.is_file() and pdf.stat().st_size > 0:
        return pdf
    limit = settings.slide_memory_limit_mb()
    if address_space_limited() and done.peak_mb >= limit * OOM_PEAK_SHARE:
        raise ConversionOutOfMemory(
            f"{name}: LibreOffice failed (exit {done.returncode}) at its memory limit: its address "
            f"space reached {done.peak_mb} of {limit} MiB (DOCVL_SLIDE_MEMORY_MB)"
        )
    if done.returncode in OOM_EXITS or any(m in done.output for m in OOM_MARKS):
        raise ConversionOutOfMemory(
            f"{name}: LibreOffice crashed (exit {done.returncode}), most likely at its memory "
            f"limit of {limit} MiB (DOCVL_SLIDE_MEMORY_MB)"
        )
    tail = done.output.decode("utf-8", "replace").strip()[-400:] or "no output"
    raise ConversionFailed(
        f"{name}: LibreOffice could not convert the deck (exit {done.returncode}): {tail}"
    )


def _pages_from_pdf(
    pdf: Path, texts: list[tuple[str, bool]] | None, warnings: list[str], name: str, max_pages: int
) -> list[PageInfo]:
    try:
        doc = pymupdf.open(pdf, filetype="pdf")  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise ConversionFailed(f"{name}: LibreOffice produced an unreadable PDF ({exc})") from exc
    try:
        if doc.page_count == 0:
            raise EmptyDocument(f"{name}: the presentation has no slides")
        if doc.page_count > max_pages:
            raise TooManyPages(
                f"{name}: {doc.page_count} slides, over the cap of {max_pages} (DOCVL_MAX_PAGES)"
            )
        if texts is not None and len(texts) != doc.page_count:
            warnings.append(
                f"{len(texts)} slides but LibreOffice made {doc.page_count} pages; "
                "slide text is matched by position"
            )
        pages: list[PageInfo] = []
        for index in range(doc.page_count):
            page = doc.load_page(index)  # type: ignore[no-untyped-call]
            words = NO_WORDS  # python-pptx text has no boxes
            if texts is not None and index < len(texts):
                text, usable = texts[index]
            else:
                text, words = text_and_words(page)
                usable = text_is_usable(text)
            width, height = float(page.rect.width), float(page.rect.height)
            pages.append(PageInfo(index + 1, width, height, text, usable, words))
        return pages
    finally:
        doc.close()  # type: ignore[no-untyped-call]
