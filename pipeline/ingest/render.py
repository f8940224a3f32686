"""Rasterize pages to model-ready RGB images of exactly ``tokens.page_pixels`` size, streaming.

* PyMuPDF (default): the page is rendered with a matrix computed from the *target* size, so an A0
  poster at 200 dpi never allocates its 62 MP pixmap; MuPDF's integer rounding (at most a pixel or
  two) is fixed by cropping/padding, never by resampling the whole page.
* pdf2image/poppler (``settings.renderer = "pdf2image"``): ``pdftoppm -scale-to-x/-y`` per run of
  pages with the same size, crop box, at most ``POPPLER_CHUNK_PAGES`` per call; same output sizes.
* Long documents (more than ``PARALLEL_MIN_PAGES`` pages, ``render_workers > 1``, idle CPUs): chunks
  of ``CHUNK_PAGES`` pages are rendered in worker processes (each opens its own Document; PyMuPDF
  objects never cross processes), pixels come back through shared memory and are yielded in page
  order with at most ``2 * workers`` chunks in flight. A crashed worker becomes ``RenderFailed``.
* /Rotate is honoured by both engines (``page.rect`` and the pixmap are the rotated page).
* Extreme aspect ratios: when ``tokens.clamp_aspect`` widened the target (strips longer than
  199:1), the page is fitted inside the target without distortion and centred on white.
* Images: PIL, first frame, EXIF orientation applied, transparency flattened on white, decompression
  bomb guard left on.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from typing import Literal, cast

from PIL import Image, ImageOps

from docvl.pipeline.errors import DocvlError, InternalError, RenderFailed, UsageError
from docvl.pipeline.ingest.document import DocKind, LoadedDocument
from docvl.pipeline.ingest.geometry import page_pixels
from docvl.pipeline.ingest.raster import (
    MUPDF_RENDER_ERRORS,
    WHITE,
    RenderedPage,
    content_size,
    finish,
    open_for_render,
    render_pdf_page,
)
from docvl.pipeline.ingest.workers import iter_parallel
from docvl.pipeline.settings import Settings

#: Above this many pages (and with render_workers > 1) rendering uses worker processes. Spawning the
#: pool and importing PyMuPDF + pydantic costs 0.7-1.8 s; two workers render at most ~1.5x one
#: process on 2 idle cores, so at ~90 pages/s it pays off only beyond ~270 pages. On a busy 2-core
#: machine forced workers measured 0.09x (16 pages) .. 0.94x (352 pages): bench/RESULTS.md.
PARALLEL_MIN_PAGES = 256
#: Workers only help when cores are idle: above this 1-minute load per usable CPU, stay in-process.
PARALLEL_MAX_LOAD_PER_CPU = 0.5
#: Pages per pdftoppm call (each call also runs pdfinfo); 16 letter pages at the budget are ~60 MB.
POPPLER_CHUNK_PAGES = 16


def encode_image(
    image: Image.Image, fmt: Literal["JPEG", "PNG"] = "JPEG", quality: int = 90
) -> bytes:
    """Encode for a model request. JPEG q90 is 7-9x faster than PNG at this size. Rendered pages
    are RGB already and are encoded as they are (``convert`` would copy every page first)."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        rgb.save(buf, format="JPEG", quality=quality, optimize=False)
    elif fmt == "PNG":
        image.save(buf, format="PNG", compress_level=3)
    else:
        raise UsageError(f"unsupported image encoding {fmt!r}; use 'JPEG' or 'PNG'")
    return buf.getvalue()


def iter_rendered(
    doc: LoadedDocument, settings: Settings, pages: Sequence[int] | None = None
) -> Iterator[RenderedPage]:
    """Yield the requested pages (default: all) in the order given, one at a time. Every exception
    is the document's typed error: a ``DocvlError`` as raised, a MuPDF error ``RenderFailed``,
    anything else ``InternalError``."""
    try:
        yield from _iter_rendered(doc, settings, pages)
    except DocvlError:
        raise
    except MUPDF_RENDER_ERRORS as exc:  # a damaged page MuPDF only meets when drawing it
        raise RenderFailed(
            f"{doc.path.name}: a page cannot be rendered ({type(exc).__name__}: {exc})"
        ) from exc
    except Exception as exc:
        raise InternalError(f"{doc.path.name}: rendering: {type(exc).__name__}: {exc}") from exc


def _iter_rendered(
    doc: LoadedDocument, settings: Settings, pages: Sequence[int] | None
) -> Iterator[RenderedPage]:
    numbers = _select(doc, pages)
    if not numbers:
        return
    targets = {n: page_pixels(doc.geometry[n - 1], doc.kind, settings) for n in numbers}
    if doc.kind is DocKind.IMAGE:
        yield from _iter_image(doc, numbers, targets)
    elif settings.renderer == "pdf2image":
        yield from _iter_poppler(doc, numbers, targets)
    elif use_workers(len(numbers), settings.render_workers):
        yield from iter_parallel(doc, numbers, targets, settings.render_workers)
    else:
        yield from _iter_pymupdf(doc, numbers, targets)


def use_workers(n_pages: int, workers: int) -> bool:
    """Worker processes for long documents, when more than one CPU is usable and mostly idle."""
    if n_pages <= PARALLEL_MIN_PAGES or workers <= 1:
        return False
    cpus = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    if cpus < 2:
        return False
    try:
        load = os.getloadavg()[0]
    except OSError:
        return True
    return load / cpus <= PARALLEL_MAX_LOAD_PER_CPU


def _select(doc: LoadedDocument, pages: Sequence[int] | None) -> list[int]:
    if pages is None:
        return list(range(1, doc.page_count + 1))
    numbers = list(pages)
    bad = [
        n
        for n in numbers
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= doc.page_count
    ]
    if bad:
        raise UsageError(f"{doc.path.name}: page(s) {bad[:5]} out of range 1..{doc.page_count}")
    return numbers


def _iter_pymupdf(
    doc: LoadedDocument, numbers: list[int], targets: dict[int, tuple[int, int]]
) -> Iterator[RenderedPage]:
    try:
        pdoc = open_for_render(str(doc.render_path), doc.password)
    except RenderFailed:
        raise
    except Exception as exc:
        raise RenderFailed(
            f"{doc.path.name}: cannot open for rendering ({exc})", page=numbers[0]
        ) from exc
    try:
        for number in numbers:
            yield RenderedPage(number, render_pdf_page(pdoc, number, targets[number]))
    finally:
        pdoc.close()  # type: ignore[no-untyped-call]


# --- pdf2image / poppler --------------------------------------------------------------------------


def _iter_poppler(
    doc: LoadedDocument, numbers: list[int], targets: dict[int, tuple[int, int]]
) -> Iterator[RenderedPage]:
    from pdf2image import convert_from_path

    # pdftoppm applies -scale-to-x/-y to the unrotated page: swap them for /Rotate 90 and 270.
    try:
        pdoc = open_for_render(str(doc.render_path), doc.password)
        try:
            quarter = {n: pdoc.load_page(n - 1).rotation % 180 == 90 for n in set(numbers)}  # type: ignore[no-untyped-call]
        finally:
            pdoc.close()  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise RenderFailed(
            f"{doc.path.name}: cannot read page rotations ({exc})", page=numbers[0]
        ) from exc

    def geometry(n: int) -> tuple[tuple[int, int], tuple[int, int], bool]:
        info = doc.geometry[n - 1]
        return content_size(info.width_pt, info.height_pt, targets[n]), targets[n], quarter[n]

    runs: list[list[int]] = []
    for n in numbers:  # consecutive pages with the same geometry, CHUNK_PAGES at most per call
        run = runs[-1] if runs else None
        if (
            run
            and n == run[-1] + 1
            and len(run) < POPPLER_CHUNK_PAGES
            and geometry(n) == geometry(run[0])
        ):
            run.append(n)
        else:
            runs.append([n])
    for run in runs:
        (cw, ch), target, swapped = geometry(run[0])
        size = (ch, cw) if swapped else (cw, ch)
        try:  # pdf2image types userpw as str but treats None as "no password"
            images = convert_from_path(
                doc.render_path,
                first_page=run[0],
                last_page=run[-1],
                size=size,
                use_cropbox=True,
                thread_count=1,
                userpw=cast(str, doc.password),
            )
        except Exception as exc:
            raise RenderFailed(
                f"pages {run[0]}-{run[-1]}: pdf2image/poppler failed ({type(exc).__name__}: {exc})",
                page=run[0],
            ) from exc
        if len(images) != len(run):
            raise RenderFailed(
                f"pages {run[0]}-{run[-1]}: poppler returned {len(images)} image(s)", page=run[0]
            )
        for n, image in zip(run, images, strict=True):
            yield RenderedPage(n, finish(image, (cw, ch), target))
        del images


# --- images ---------------------------------------------------------------------------------------


def _iter_image(
    doc: LoadedDocument, numbers: list[int], targets: dict[int, tuple[int, int]]
) -> Iterator[RenderedPage]:
    for number in numbers:
        yield RenderedPage(number, render_image(doc, targets[number]))


def render_image(doc: LoadedDocument, target: tuple[int, int]) -> Image.Image:
    th, tw = target
    try:
        with Image.open(doc.render_path) as im:
            orientation = im.getexif().get(0x0112, 1)
            want = (th, tw) if orientation in (5, 6, 7, 8) else (tw, th)
            if im.format == "JPEG":
                im.draft("RGB", want)  # decode at a reduced scale when the target is much smaller
            frame = ImageOps.exif_transpose(im)
            rgb = _flatten(frame)
        first = doc.geometry[0]
        cw, ch = content_size(float(first.width_pt), float(first.height_pt), target)
        if rgb.size != (cw, ch):
            rgb = rgb.resize((cw, ch), Image.Resampling.LANCZOS, reducing_gap=3.0)
        return finish(rgb, (cw, ch), target)
    except Exception as exc:
        raise RenderFailed(f"image: {type(exc).__name__}: {exc}", page=1) from exc


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, WHITE)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")
