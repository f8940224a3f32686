from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pymupdf
import pytest
from PIL import Image, ImageChops, ImageStat

from docvl.pipeline.errors import RenderFailed, UsageError
from docvl.pipeline.ingest import render
from docvl.pipeline.ingest.document import LoadedDocument
from docvl.pipeline.ingest.geometry import page_pixels
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.ingest.render import RenderedPage, encode_image, iter_rendered
from docvl.pipeline.settings import Settings

RENDERERS = ["pymupdf", "pdf2image"]


def _check_sizes(
    doc: LoadedDocument, settings: Settings, pages: list[int] | None = None
) -> list[RenderedPage]:
    out = list(iter_rendered(doc, settings, pages))
    for rp in out:
        height, width = page_pixels(doc.pages[rp.page - 1], doc.kind, settings)
        assert rp.image.mode == "RGB"
        assert rp.image.size == (width, height), f"page {rp.page}"
    return out


@pytest.mark.parametrize("renderer", RENDERERS)
@pytest.mark.parametrize(
    "relpath",
    [
        "good/tracemonkey_paper.pdf",
        "good/freeculture_book_352p.pdf",
        "good/ca_warn_report_16p.pdf",
        "scanned/lincoln_letter_handwritten.pdf",
        "slides/saas_slide_widescreen.pdf",
        "bad/missing_pdf_header.pdf",
    ],
)
def test_sizes_match_page_pixels(corpus: Path, renderer: str, relpath: str) -> None:
    settings = Settings(renderer=renderer)  # type: ignore[arg-type]
    doc = load_document(corpus / relpath, settings)
    assert len(_check_sizes(doc, settings, list(range(1, min(doc.page_count, 6) + 1)))) == min(
        doc.page_count, 6
    )


def _thumb(image: Image.Image) -> Image.Image:
    return image.convert("L").resize((96, 96), Image.Resampling.BOX)


def _diff(a: Image.Image, b: Image.Image) -> float:
    return float(ImageStat.Stat(ImageChops.difference(_thumb(a), _thumb(b))).mean[0])


@pytest.mark.parametrize("renderer", RENDERERS)
def test_rotation_honoured(corpus: Path, tmp_path: Path, renderer: str) -> None:
    settings = Settings(renderer=renderer)  # type: ignore[arg-type]
    src = corpus / "good/wikipedia_rotated90.pdf"
    unrotated = tmp_path / "unrotated.pdf"
    with pymupdf.open(src) as pdoc:
        assert pdoc[0].rotation == 90
        pdoc[0].set_rotation(0)
        pdoc.save(unrotated)
    rotated_img = next(iter_rendered(load_document(src, settings), settings)).image
    plain_doc = load_document(unrotated, settings)
    assert (plain_doc.pages[0].width_pt, plain_doc.pages[0].height_pt) == (612.0, 792.0)
    plain_img = next(iter_rendered(plain_doc, settings)).image
    assert rotated_img.width > rotated_img.height and plain_img.height > plain_img.width
    clockwise = plain_img.rotate(-90, expand=True)  # /Rotate 90 turns the page clockwise
    counter = plain_img.rotate(90, expand=True)
    assert _diff(rotated_img, clockwise) < 8
    assert _diff(rotated_img, clockwise) < _diff(rotated_img, counter) / 2


@pytest.mark.parametrize("renderer", RENDERERS)
@pytest.mark.parametrize("dpi", [150, 300])
def test_a0_page_capped(corpus: Path, renderer: str, dpi: int) -> None:
    settings = Settings(renderer=renderer, dpi=dpi)  # type: ignore[arg-type]
    doc = load_document(corpus / "bad/huge_page_A0_rotated.pdf", settings)
    (page,) = _check_sizes(doc, settings)
    assert page.image.width * page.image.height <= settings.max_pixels
    assert page.image.width > page.image.height  # /Rotate 90 landscape


def _synthetic(tmp_path: Path, width: float, height: float) -> Path:
    path = tmp_path / f"page_{width}x{height}.pdf"
    pdoc = pymupdf.open()
    page = pdoc.new_page(width=width, height=height)
    page.draw_rect(
        pymupdf.Rect(0, 0, width, height), color=(0, 0, 0), width=min(width, height) / 10
    )
    if min(width, height) > 20:
        page.insert_text((5, 15), "strip", fontsize=10)
    pdoc.save(path)
    pdoc.close()
    return path


@pytest.mark.parametrize("renderer", RENDERERS)
@pytest.mark.parametrize("size", [(612.0, 14000.0), (14000.0, 40.0), (14000.0, 3.0), (3.0, 3.0)])
def test_extreme_page_sizes(tmp_path: Path, renderer: str, size: tuple[float, float]) -> None:
    settings = Settings(renderer=renderer)  # type: ignore[arg-type]
    doc = load_document(_synthetic(tmp_path, *size), settings)
    (page,) = _check_sizes(doc, settings)
    pixels = page.image.width * page.image.height
    assert settings.min_pixels <= pixels <= settings.max_pixels
    assert max(page.image.size) / min(page.image.size) < 200


def test_streaming_long_document_in_order(corpus: Path) -> None:
    settings = Settings(render_workers=1)
    doc = load_document(corpus / "good/freeculture_book_352p.pdf", settings)
    stream = iter_rendered(doc, settings)
    assert isinstance(stream, Iterator)
    first = list(itertools.islice(stream, 3))
    assert [p.page for p in first] == [1, 2, 3]
    stream.close()
    numbers = [rp.page for rp in iter_rendered(doc, settings, pages=range(300, 353))]
    assert numbers == list(range(300, 353))


@pytest.mark.slow
def test_multiprocess_identical_to_single(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        render, "PARALLEL_MAX_LOAD_PER_CPU", float("inf")
    )  # parallel even on a busy machine
    monkeypatch.setattr(render, "PARALLEL_MIN_PAGES", 20)
    assert (
        render.use_workers(21, 2)
        and not render.use_workers(21, 1)
        and not render.use_workers(20, 2)
    )
    doc = load_document(corpus / "good/freeculture_book_352p.pdf", Settings())
    pages = list(range(150, 190))
    single = [
        (rp.page, rp.image.tobytes())
        for rp in iter_rendered(doc, Settings(render_workers=1), pages)
    ]
    multi = [
        (rp.page, rp.image.tobytes())
        for rp in iter_rendered(doc, Settings(render_workers=2), pages)
    ]
    assert [p for p, _ in multi] == pages
    assert multi == single


def test_parallel_stream_stops_early(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "PARALLEL_MIN_PAGES", 4)
    monkeypatch.setattr(render, "PARALLEL_MAX_LOAD_PER_CPU", float("inf"))
    doc = load_document(corpus / "good/tracemonkey_paper.pdf", Settings())
    stream = iter_rendered(doc, Settings(render_workers=2))
    assert [rp.page for rp in itertools.islice(stream, 5)] == [1, 2, 3, 4, 5]
    stream.close()  # shuts the worker pool down; nothing left running


def test_encrypted_renders_with_both_engines(corpus: Path) -> None:
    for renderer in RENDERERS:
        settings = Settings(renderer=renderer, password="1234")  # type: ignore[arg-type]
        doc = load_document(corpus / "bad/encrypted_user_password_1234.pdf", settings)
        _check_sizes(doc, settings)


def test_engines_agree(corpus: Path) -> None:
    doc = load_document(corpus / "good/invoice.pdf", Settings())
    a = next(iter_rendered(doc, Settings(renderer="pymupdf"))).image
    b = next(iter_rendered(doc, Settings(renderer="pdf2image"))).image
    assert a.size == b.size and _diff(a, b) < 6


def test_page_selection(corpus: Path) -> None:
    doc = load_document(corpus / "good/tracemonkey_paper.pdf", Settings())
    assert [rp.page for rp in iter_rendered(doc, Settings(), [3, 1])] == [3, 1]
    with pytest.raises(UsageError):
        list(iter_rendered(doc, Settings(), [0]))
    with pytest.raises(UsageError):
        list(iter_rendered(doc, Settings(), [15]))


def test_missing_render_path_is_render_failed(corpus: Path, tmp_path: Path) -> None:
    copy = tmp_path / "doc.pdf"
    copy.write_bytes((corpus / "good/invoice.pdf").read_bytes())
    doc = load_document(copy, Settings())
    copy.unlink()
    with pytest.raises(RenderFailed) as info:
        list(iter_rendered(doc, Settings()))
    assert info.value.page == 1


def test_images_render_rgb_exact(tmp_path: Path) -> None:
    png = tmp_path / "alpha.png"
    Image.new("RGBA", (3000, 2000), (255, 0, 0, 0)).save(png)
    settings = Settings()
    doc = load_document(png, settings)
    (page,) = _check_sizes(doc, settings)
    assert page.image.getpixel((10, 10)) == (255, 255, 255)  # transparency flattened on white
    jpg = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    img = Image.new("RGB", (800, 400), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 400, 400))  # left half red
    img.save(jpg, exif=exif, quality=95)
    doc = load_document(jpg, settings)
    (page,) = _check_sizes(doc, settings)
    assert page.image.height > page.image.width
    r, _g, b = page.image.getpixel((page.image.width // 2, 10))  # EXIF 6: left half ends up on top
    assert r > 200 and b < 60


def test_encode_image() -> None:
    image = Image.new("RGB", (64, 32), (10, 20, 30))
    jpeg = encode_image(image)
    png = encode_image(image, "PNG")
    assert jpeg[:3] == b"\xff\xd8\xff" and png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UsageError):
        encode_image(image, "GIF")  # type: ignore[arg-type]


@pytest.mark.slow
def test_slides_render(samples: Path) -> None:
    settings = Settings()
    with load_document(samples / "deck.pptx", settings) as doc:
        assert len(_check_sizes(doc, settings)) == 5
