"""Rasterizing one PDF page to exactly its planned size: the primitives the in-process renderer
(:mod:`docvl.pipeline.ingest.render`) and the worker processes
(:mod:`docvl.pipeline.ingest.workers`) share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pymupdf
from PIL import Image

from docvl.pipeline.errors import RenderFailed

# MuPDF prints its errors to stdout, which would corrupt `--json` and JSONL output; its messages
# stay in the warning store instead (load copies them into the document's warnings).
pymupdf.TOOLS.mupdf_display_errors(False)  # type: ignore[no-untyped-call]
pymupdf.TOOLS.mupdf_display_warnings(False)  # type: ignore[no-untyped-call]

#: What MuPDF raises on a damaged file (FzErrorBase is not a RuntimeError; PyMuPDF's own checks
#: raise RuntimeError/ValueError): the document is at fault, not docvl.
MUPDF_ERRORS = (RuntimeError, ValueError, IndexError, OverflowError, pymupdf.mupdf.FzErrorBase)
#: At render time only MuPDF's own errors blame the page: any other exception there (a crashed
#: worker, a bug) stays ``internal_error``, which is never cached.
MUPDF_RENDER_ERRORS = (pymupdf.mupdf.FzErrorBase, pymupdf.FileDataError)

CHUNK_PAGES = 4
#: The target may deviate this much from the page's aspect ratio before we letterbox instead of
#: stretch.
ASPECT_TOLERANCE = 1.10
WHITE = (255, 255, 255)
#: Start method for render workers: "spawn" is safe in processes with threads (servers, torch).
START_METHOD = "spawn"


@dataclass(frozen=True)
class RenderedPage:
    page: int  #: 1-based page number
    image: Image.Image  #: RGB, exactly ``tokens.page_pixels`` (width, height)


# --- geometry shared by both PDF engines ----------------------------------------------------------


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


# --- PyMuPDF --------------------------------------------------------------------------------------


def open_pdf_file(path: str | Path) -> pymupdf.Document:
    """``pymupdf.open`` for any path. MuPDF takes only UTF-8 file names: a name holding bytes that
    are not UTF-8 (kept by Python as surrogates) is read into memory instead."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        data = Path(path).read_bytes()
        return pymupdf.open(stream=data, filetype="pdf")  # type: ignore[no-untyped-call]
    return pymupdf.open(name, filetype="pdf")  # type: ignore[no-untyped-call]


def open_for_render(path: str, password: str | None) -> pymupdf.Document:
    pdoc = open_pdf_file(path)
    if pdoc.needs_pass and not (password is not None and pdoc.authenticate(password)):  # type: ignore[no-untyped-call]
        pdoc.close()  # type: ignore[no-untyped-call]
        raise RenderFailed(f"{path}: cannot reopen the encrypted PDF with the loaded password")
    return pdoc


def render_pdf_page(pdoc: pymupdf.Document, number: int, target: tuple[int, int]) -> Image.Image:
    """Render page ``number`` (1-based) of an open Document to exactly
    ``target`` = (height, width). The pixels are copied once, from the pixmap into the image."""
    try:
        pix, content = _pixmap(pdoc, number, target)
        image = Image.frombuffer(
            "RGB", (pix.width, pix.height), pix.samples_mv, "raw", "RGB", pix.stride, 1
        )
        if image.size != (target[1], target[0]):
            image = finish(image, content, target)
        del pix
        return image
    except Exception as exc:
        raise RenderFailed(f"page {number}: {type(exc).__name__}: {exc}", page=number) from exc


def render_pdf_raw(
    pdoc: pymupdf.Document, number: int, target: tuple[int, int]
) -> tuple[int, int, bytes]:
    """(width, height, packed RGB bytes) of the page at exactly ``target`` (for the render workers,
    whose pixels travel as bytes). The usual case (MuPDF hits the size exactly) copies the pixmap
    once and never goes through PIL."""
    try:
        pix, content = _pixmap(pdoc, number, target)
        th, tw = target
        if (pix.width, pix.height) == (tw, th) and pix.stride == 3 * tw and pix.n == 3:
            return tw, th, pix.samples
        image = Image.frombuffer(
            "RGB", (pix.width, pix.height), pix.samples, "raw", "RGB", pix.stride, 1
        )
        return tw, th, finish(image, content, target).tobytes()
    except Exception as exc:
        raise RenderFailed(f"page {number}: {type(exc).__name__}: {exc}", page=number) from exc


def _pixmap(
    pdoc: pymupdf.Document, number: int, target: tuple[int, int]
) -> tuple[pymupdf.Pixmap, tuple[int, int]]:
    """The RGB pixmap of page ``number`` drawn at its content size inside ``target``, and that
    size (width, height)."""
    page = pdoc.load_page(number - 1)  # type: ignore[no-untyped-call]
    rect = page.rect
    if rect.is_empty or rect.width <= 0 or rect.height <= 0:
        raise ValueError(f"empty page box {tuple(rect)}")
    cw, ch = content_size(rect.width, rect.height, target)
    matrix = pymupdf.Matrix(cw / rect.width, ch / rect.height)  # type: ignore[no-untyped-call]
    pix = page.get_pixmap(matrix=matrix, colorspace=pymupdf.csRGB, alpha=False)
    return pix, (cw, ch)
