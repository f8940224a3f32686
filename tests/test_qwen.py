"""docvl.pipeline.ingest.geometry' image-token accounting against the real transformers processor
classes and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from docvl.pipeline.dev.tiny import build_tiny_model
from docvl.pipeline.ingest.document import DocKind, PageInfo
from docvl.pipeline.ingest.geometry import clamp_aspect, image_tokens, page_pixels, smart_resize
from docvl.pipeline.model.qwen import REAL_PREPROCESSOR, images_kwargs, load_processor
from docvl.pipeline.settings import Settings

REAL_MIN = REAL_PREPROCESSOR["size"]["shortest_edge"]
REAL_MAX = REAL_PREPROCESSOR["size"]["longest_edge"]
ONE_IMAGE = (
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>\n"
    "<|im_start|>assistant\n"
)

#: (id, page, kind): PDF sizes in points, image sizes in pixels.
PAGES: list[tuple[str, PageInfo, DocKind]] = [
    ("a4", PageInfo(1, 595.28, 841.89), DocKind.PDF),  # 1240x1754 px at 150 dpi
    ("letter", PageInfo(1, 612, 792), DocKind.PDF),
    ("slide-16x9", PageInfo(1, 960, 540), DocKind.PPTX),
    ("a0-poster", PageInfo(1, 2384, 3370), DocKind.PDF),
    ("tiny-3px", PageInfo(1, 3, 3), DocKind.IMAGE),  # upscaled to the minimum
    ("huge-10000x7000", PageInfo(1, 10000, 7000), DocKind.IMAGE),  # downscaled to the maximum
    ("strip-720to1", PageInfo(1, 14400, 20), DocKind.PDF),  # clamp_aspect keeps it under 200:1
    ("strip-1x1000", PageInfo(1, 1, 1000), DocKind.IMAGE),
]
SETTINGS = {
    "default": Settings.model_validate({}),
    "real-bounds": Settings.model_validate({"min_pixels": REAL_MIN, "max_pixels": REAL_MAX}),
    # min below the checkpoint's own 65,536: needs images_kwargs on every processor call
    "small-budget": Settings.model_validate(
        {"min_pixels": 16 * 1024, "max_pixels": 256 * 1024, "dpi": 72}
    ),
}
RAW_SIZES = [
    (1754, 1240),
    (2200, 1700),
    (1080, 1920),
    (3, 3),
    (7000, 10000),
    (20, 3980),
    (4000, 20),
    (255, 257),
    (16, 16),
    (4097, 4097),
    (33, 31),
]


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path) -> Any:
    return load_processor(str(tiny_model_dir))


def _hf_smart_resize() -> Any:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf

    return hf


@pytest.mark.parametrize(("height", "width"), RAW_SIZES)
@pytest.mark.parametrize(
    ("min_pixels", "max_pixels"), [(REAL_MIN, REAL_MAX), (64 * 1024, 1280 * 1024), (1024, 16384)]
)
def test_smart_resize_equals_transformers(
    height: int, width: int, min_pixels: int, max_pixels: int
) -> None:
    expected = _hf_smart_resize()(
        height, width, factor=32, min_pixels=min_pixels, max_pixels=max_pixels
    )
    assert smart_resize(height, width, min_pixels, max_pixels) == expected


@pytest.mark.parametrize(("height", "width"), RAW_SIZES)
def test_raw_image_count_equals_processor_rule(processor: Any, height: int, width: int) -> None:
    """(c) without resizing first: the checkpoint's own rule (real min/max) equals
    tokens.smart_resize."""
    h, w = smart_resize(height, width, REAL_MIN, REAL_MAX)
    data = processor._get_num_multimodal_tokens(image_sizes=[(height, width)])
    assert data["num_image_tokens"] == [image_tokens(h, w)]


def test_strip_beyond_200_to_1_needs_clamp() -> None:
    with pytest.raises(ValueError):
        _hf_smart_resize()(10, 2010, factor=32, min_pixels=REAL_MIN, max_pixels=REAL_MAX)
    h, w = clamp_aspect(10, 2010)
    assert max(h, w) / min(h, w) < 200


@pytest.mark.parametrize("settings_id", list(SETTINGS))
@pytest.mark.parametrize(("page_id", "page", "kind"), PAGES, ids=[p[0] for p in PAGES])
def test_page_pixels_count_matches_processor(
    processor: Any, settings_id: str, page_id: str, page: PageInfo, kind: DocKind
) -> None:
    settings = SETTINGS[settings_id]
    height, width = page_pixels(page, kind, settings)
    assert height % 32 == 0 and width % 32 == 0
    assert settings.min_pixels <= height * width <= settings.max_pixels
    expected = image_tokens(height, width)
    image = Image.new("RGB", (width, height), "white")
    kwargs = images_kwargs(settings.min_pixels, settings.max_pixels)
    out = processor(text=[ONE_IMAGE], images=[image], images_kwargs=kwargs, return_tensors="pt")
    t, gh, gw = out["image_grid_thw"][0].tolist()
    assert t == 1 and gh * gw // 4 == expected  # (b) the grid the model sees
    assert (
        int((out["input_ids"] == processor.image_token_id).sum()) == expected
    )  # (b) pad tokens in the prompt
    text_only = processor.tokenizer(ONE_IMAGE)["input_ids"]
    assert out["input_ids"].shape[1] == len(text_only) - 1 + expected
    counted = processor._get_num_multimodal_tokens(
        image_sizes=[(height, width)],
        images_kwargs={"min_pixels": settings.min_pixels, "max_pixels": settings.max_pixels},
    )
    assert counted["num_image_tokens"] == [expected]  # (c)
    if settings.min_pixels >= REAL_MIN:
        # Inside the checkpoint's own bounds the processor leaves the rendered page alone: no
        # per-call sizing needed.
        plain = processor(text=[ONE_IMAGE], images=[image], return_tensors="pt")
        assert plain["image_grid_thw"].tolist() == out["image_grid_thw"].tolist()
        assert processor._get_num_multimodal_tokens(image_sizes=[(height, width)])[
            "num_image_tokens"
        ] == [expected]


def test_a4_150dpi_real_bounds_is_2145_tokens() -> None:
    height, width = page_pixels(PageInfo(1, 595.28, 841.89), DocKind.PDF, SETTINGS["real-bounds"])
    assert (height, width) == (1760, 1248)
    assert image_tokens(height, width) == 2145


def test_small_budget_without_images_kwargs_is_upscaled(processor: Any) -> None:
    """Why the backend must pass images_kwargs: below 65,536 px the checkpoint's default would
    upscale."""
    image = Image.new("RGB", (128, 128))
    plain = processor(text=[ONE_IMAGE], images=[image], return_tensors="pt")["image_grid_thw"][
        0
    ].tolist()
    sized = processor(
        text=[ONE_IMAGE],
        images=[image],
        images_kwargs=images_kwargs(1024, 262144),
        return_tensors="pt",
    )["image_grid_thw"][0].tolist()
    assert plain == [1, 16, 16] and sized == [1, 8, 8]


def test_with_torchvision_stock_processor_agrees(tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    from transformers import AutoProcessor

    model_dir = build_tiny_model(tmp_path / "tv")
    stock = AutoProcessor.from_pretrained(str(model_dir), local_files_only=True)
    ours = load_processor(str(model_dir))
    image = Image.new("RGB", (1240, 1754), "white")
    a = stock(text=[ONE_IMAGE], images=[image], return_tensors="pt")
    b = ours(text=[ONE_IMAGE], images=[image], return_tensors="pt")
    assert a["image_grid_thw"].tolist() == b["image_grid_thw"].tolist()
    assert a["input_ids"].tolist() == b["input_ids"].tolist()
