"""Rasterize pages to model-ready RGB images of exactly ``tokens.page_pixels`` size, streaming.

* PyMuPDF (default): the page is rendered with a matrix computed from the *target* size, so an A0
  poster at 200 dpi never allocates its 62 MP pixmap; MuPDF's integer rounding (at most a pixel or
  two) is fixed by cropping/padding, never by resampling the whole page.
* pdf2image/poppler (``settings.renderer = "pdf2image"``): ``pdftoppm -scale-to-x/-y`` per run of
  pages with the same size, crop box, at most ``POPPLER_CHUNK_PAGES`` per call; same output sizes.
* Long documents (more than ``PARALLEL_MIN_PAGES`` pages, ``render_workers > 1``, idle CPUs): chunks of
  ``CHUNK_PAGES`` pages are rendered in worker processes (each opens its own Document; PyMuPDF
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
from dataclasses import dataclass
from typing import Literal, cast

import pymupdf
from PIL import Image, ImageOps

from pipeline.document import DocKind, LoadedDocument
from pipeline.errors import RenderFailed, UsageError
from pipeline.settings import Settings
from pipeline.tokens import page_pixels

# MuPDF prints its errors to stdout, which would corrupt `--json` and JSONL output; its messages stay
# in the warning store instead (load copies them into the document's warnings).
pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)

#: Above this many pages (and with render_workers > 1) rendering uses worker processes. Spawning the
#: pool and importing PyMuPDF + pydantic costs 0.7-1.8 s; two workers render at most ~1.5x one
#: process on 2 idle cores, so at ~90 pages/s it pays off only beyond ~270 pages. On a busy 2-core
#: machine forced workers measured 0.16x (16 pages) .. 0.94x (352 pages): bench/RESULTS-render.md.
PARALLEL_MIN_PAGES = 256
#: Workers only help when cores are idle: above this 1-minute load per usable CPU, stay in-process.
PARALLEL_MAX_LOAD_PER_CPU = 0.5
CHUNK_PAGES = 4
#: Pages per pdftoppm call (each call also runs pdfinfo); 16 letter pages at the budget are ~60 MB.
POPPLER_CHUNK_PAGES = 16
#: The target may deviate this much from the page's aspect ratio before we letterbox instead of stretch.
ASPECT_TOLERANCE = 1.10
WHITE = (255, 255, 255)
#: Start method for render workers: "spawn" is safe in processes with threads (servers, torch).
START_METHOD = "spawn"


@dataclass(frozen=True)
class RenderedPage:
    page: int  #: 1-based page number
    image: Image.Image  #: RGB, exactly ``tokens.page_pixels`` (width, height)


def encode_image(image: Image.Image, fmt: Literal["JPEG", "PNG"] = "JPEG", quality: int = 90) -> bytes:
    """Encode for a model request. JPEG q90 is 7-9x faster than PNG at this size."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=False)
    elif fmt == "PNG":
        image.save(buf, format="PNG", compress_level=3)
    else:
        raise UsageError(f"unsupported image encoding {fmt!r}; use 'JPEG' or 'PNG'")
    return buf.getvalue()


def iter_rendered(doc: LoadedDocument, settings: Settings,
                  pages: Sequence[int] | None = None) -> Iterator[RenderedPage]:
    """Yield the requested pages (default: all) in the order given, one at a time."""
    numbers = _select(doc, pages)
    if not numbers:
        return
    targets = {n: page_pixels(doc.pages[n - 1], doc.kind, settings) for n in numbers}
    if doc.kind is DocKind.IMAGE:
        yield from _iter_image(doc, numbers, targets)
    elif settings.renderer == "pdf2image":
        yield from _iter_poppler(doc, numbers, targets)
    elif use_workers(len(numbers), settings.render_workers):
        from pipeline.render_parallel import iter_parallel

        yield from iter_parallel(doc, numbers, targets, settings.render_workers)
    else:
        yield from _iter_pymupdf(doc, numbers, targets)


def use_workers(n_pages: int, workers: int) -> bool:
    """Worker processes for long documents, when more than one CPU is usable and mostly idle."""
    if n_pages <= PARALLEL_MIN_PAGES or workers <= 1:
        return False
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
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
    bad = [n for n in numbers if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= doc.page_count]
    if bad:
        raise UsageError(f"{doc.path.name}: page(s) {bad[:5]} out of range 1..{doc.page_count}")
    return numbers


# --- geometry shared by both PDF engines -----------------------------------------------------------


def content_size(width_pt: float, height_pt: float, target: tuple[int, int]) -> tuple[int, int]:
    """(width, height) the page content is drawn at inside ``target`` = (height, width): the full
    target, unless that would stretch the page by more than ASPECT_TOLERANCE (then fit inside)."""
    th, tw = target
    if width_pt <= 0 or height_pt <= 0:
        return tw, th
    ratio = (tw / th) / (width_pt / height_pt)
    if max(ratio, 1 / ratio) <= ASPECT_TOLERANCE:
        return tw, th
    scale = min(tw / width_pt, th / height_pt)
    return max(1, min(tw, round(width_pt * scale))), max(1, min(th, round(height_pt * scale)))


def finish(image: Image.Image, content: tuple[int, int], target: tuple[int, int]) -> Image.Image:
    """Bring a rendered image to exactly ``target`` (height, width): fix off-by-a-pixel rounding by
    crop/pad, resample only when the engine missed by more, letterbox onto white when needed."""
    cw, ch = content
    th, tw = target
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (cw, ch):
        if abs(image.width - cw) <= 2 and abs(image.height - ch) <= 2:
            canvas = Image.new("RGB", (cw, ch), WHITE)
            canvas.paste(image.crop((0, 0, min(cw, image.width), min(ch, image.height))), (0, 0))
            image = canvas
        else:
            image = image.resize((cw, ch), Image.Resampling.LANCZOS)
    if (cw, ch) != (tw, th):
        canvas = Image.new("RGB", (tw, th), WHITE)
        canvas.paste(image, ((tw - cw) // 2, (th - ch) // 2))
        image = canvas
    return image


# --- PyMuPDF ---------------------------------------------------------------------------------------


def open_for_render(path: str, password: str | None) -> pymupdf.Document:
    pdoc = pymupdf.open(path, filetype="pdf")
    if pdoc.needs_pass and not (password is not None and pdoc.authenticate(password)):
        pdoc.close()
        raise RenderFailed(f"{path}: cannot reopen the encrypted PDF with the loaded password")
    return pdoc


def render_pdf_page(pdoc: pymupdf.Document, number: int, target: tuple[int, int]) -> Image.Image:
    """Render page ``number`` (1-based) of an open Document to exactly ``target`` = (height, width)."""
    width, height, data = render_pdf_raw(pdoc, number, target)
    return Image.frombytes("RGB", (width, height), data)


def render_pdf_raw(pdoc: pymupdf.Document, number: int, target: tuple[int, int]) -> tuple[int, int, bytes]:
    """(width, height, packed RGB bytes) of the page at exactly ``target``. The usual case (MuPDF hits
    the size exactly) copies the pixmap once and never goes through PIL."""
    try:
        page = pdoc.load_page(number - 1)
        rect = page.rect
        if rect.is_empty or rect.width <= 0 or rect.height <= 0:
            raise ValueError(f"empty page box {tuple(rect)}")
        cw, ch = content_size(rect.width, rect.height, target)
        matrix = pymupdf.Matrix(cw / rect.width, ch / rect.height)
        pix = page.get_pixmap(matrix=matrix, colorspace=pymupdf.csRGB, alpha=False)
        th, tw = target
        if (pix.width, pix.height) == (tw, th) and pix.stride == 3 * tw and pix.n == 3:
            return tw, th, pix.samples
        image = Image.frombuffer("RGB", (pix.width, pix.height), pix.samples, "raw", "RGB", pix.stride, 1)
        return tw, th, finish(image, (cw, ch), target).tobytes()
    except Exception as exc:
        raise RenderFailed(f"page {number}: {type(exc).__name__}: {exc}", page=number) from exc


def _iter_pymupdf(doc: LoadedDocument, numbers: list[int],
                  targets: dict[int, tuple[int, int]]) -> Iterator[RenderedPage]:
    try:
        pdoc = open_for_render(str(doc.render_path), doc.password)
    except RenderFailed:
        raise
    except Exception as exc:
        raise RenderFailed(f"{doc.path.name}: cannot open for rendering ({exc})", page=numbers[0]) from exc
    try:
        for number in numbers:
            yield RenderedPage(number, render_pdf_page(pdoc, number, targets[number]))
    finally:
        pdoc.close()


# --- pdf2image / poppler --------------------------------------------------------------------------


def _iter_poppler(doc: LoadedDocument, numbers: list[int],
                  targets: dict[int, tuple[int, int]]) -> Iterator[RenderedPage]:
    from pdf2image import convert_from_path

    # pdftoppm applies -scale-to-x/-y to the unrotated page: swap them for /Rotate 90 and 270.
    try:
        pdoc = open_for_render(str(doc.render_path), doc.password)
        try:
            quarter = {n: pdoc.load_page(n - 1).rotation % 180 == 90 for n in set(numbers)}
        finally:
            pdoc.close()
    except Exception as exc:
        raise RenderFailed(f"{doc.path.name}: cannot read page rotations ({exc})", page=numbers[0]) from exc

    def geometry(n: int) -> tuple[tuple[int, int], tuple[int, int], bool]:
        info = doc.pages[n - 1]
        return content_size(info.width_pt, info.height_pt, targets[n]), targets[n], quarter[n]

    runs: list[list[int]] = []
    for n in numbers:  # consecutive pages with the same geometry, CHUNK_PAGES at most per call
        run = runs[-1] if runs else None
        if run and n == run[-1] + 1 and len(run) < POPPLER_CHUNK_PAGES and geometry(n) == geometry(run[0]):
            run.append(n)
        else:
            runs.append([n])
    for run in runs:
        (cw, ch), target, swapped = geometry(run[0])
        size = (ch, cw) if swapped else (cw, ch)
        try:  # pdf2image types userpw as str but treats None as "no password"
            images = convert_from_path(doc.render_path, first_page=run[0], last_page=run[-1], size=size,
                                       use_cropbox=True, thread_count=1, userpw=cast(str, doc.password))
        except Exception as exc:
            raise RenderFailed(f"pages {run[0]}-{run[-1]}: pdf2image/poppler failed "
                               f"({type(exc).__name__}: {exc})", page=run[0]) from exc
        if len(images) != len(run):
            raise RenderFailed(f"pages {run[0]}-{run[-1]}: poppler returned {len(images)} image(s)",
                               page=run[0])
        for n, image in zip(run, images, strict=True):
            yield RenderedPage(n, finish(image, (cw, ch), target))
        del images


# --- images ----------------------------------------------------------------------------------------


def _iter_image(doc: LoadedDocument, numbers: list[int],
                targets: dict[int, tuple[int, int]]) -> Iterator[RenderedPage]:
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
        cw, ch = content_size(float(doc.pages[0].width_pt), float(doc.pages[0].height_pt), target)
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

