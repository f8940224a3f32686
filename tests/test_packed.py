"""Page images kept PNG-packed until the model input needs them (docvl.pipeline.ingest.packed):
nothing is decoded by packing, sizing, hashing or unpacking a copy, and the pixels come back
exactly; a large window keeps its pages packed (docvl.pipeline.engine.windows)."""

from __future__ import annotations

from pathlib import Path

import craftkit as ck
import pytest
from PIL import Image, ImageDraw

from docvl.pipeline.engine import windows
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.ingest.packed import digest, pack, packed_bytes, unpacked
from docvl.pipeline.plan.planner import window_content
from docvl.pipeline.result import Span
from docvl.pipeline.settings import Settings


def page() -> Image.Image:
    image = Image.new("RGB", (300, 400), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for y in range(20, 380, 12):
        draw.line((20, y, 280, y), fill=(y % 256, 40, 90), width=2)
    return image


def test_a_packed_page_is_not_decoded_until_unpacked() -> None:
    original = page()
    packed = pack(original)
    data = packed_bytes(packed)
    assert data is not None and len(data) < original.width * original.height * 3 // 4
    assert (packed.size, packed.mode) == (original.size, "RGB")
    assert pack(packed) is packed
    assert digest(packed) == digest(pack(original.copy()))  # same pixels, same key, no decoding
    copy = unpacked(packed)
    assert copy.tobytes() == original.tobytes()
    assert packed_bytes(packed) is not None, "unpacking a copy decoded the packed page itself"
    assert unpacked(original) is original and packed_bytes(original) is None


def test_a_large_window_keeps_its_pages_packed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(dpi=36, min_pixels=32 * 32, max_pixels=64 * 32 * 32)
    with load_document(ck.blank_pdf(tmp_path / "three.pdf", 3), settings) as doc:
        content = window_content([doc], [Span(doc=0, first_page=1, last_page=3)], settings)
        small = windows.attach_images([doc], content, settings)
        monkeypatch.setattr(windows, "PACK_MIN_PIXELS", 0)
        large = windows.attach_images([doc], content, settings)
    small_images = [p.image for p in small if getattr(p, "image", None) is not None]
    large_images = [p.image for p in large if getattr(p, "image", None) is not None]
    assert len(small_images) == len(large_images) == 3
    assert all(packed_bytes(im) is None for im in small_images)
    assert all(packed_bytes(im) is not None for im in large_images)
    for a, b in zip(small_images, large_images, strict=True):
        assert a is not None and b is not None
        assert unpacked(b).tobytes() == a.tobytes()
