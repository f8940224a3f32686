"""Exact Qwen3-VL image-token accounting and the per-page pixel budget.

The rule is the processor's own ``smart_resize`` (transformers
``qwen2_vl/image_processing_qwen2_vl``) with the real checkpoint's settings: patch 16 x merge 2 =
one token per 32x32 block. The renderer resizes every page to exactly :func:`page_pixels`, so the
processor leaves it alone and the count is exact.
"""

from __future__ import annotations

import math

from docvl.pipeline.ingest.document import DocKind, PageInfo
from docvl.pipeline.settings import Settings

FACTOR = 32
#: The processor refuses images with a longer aspect ratio than this.
MAX_ASPECT = 200
#: Each image is wrapped in <|vision_start|> ... <|vision_end|>.
VISION_WRAP_TOKENS = 2


def smart_resize(
    height: int, width: int, min_pixels: int, max_pixels: int, factor: int = FACTOR
) -> tuple[int, int]:
    """Mirror of transformers' ``smart_resize`` (Python ``round`` included)."""
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def clamp_aspect(height: float, width: float) -> tuple[float, float]:
    """Pixel-bomb guard for strips: widen the short side so the aspect ratio stays
    <= MAX_ASPECT - 1."""
    limit = MAX_ASPECT - 1
    if height > width * limit:
        width = height / limit
    elif width > height * limit:
        height = width / limit
    return height, width


def page_pixels(page: PageInfo, kind: DocKind, settings: Settings) -> tuple[int, int]:
    """(height, width) in pixels the page image will have: the DPI size fitted to the pixel budget.

    Never larger than ``max_pixels`` whatever the page size (A0 posters, 14,000-pt strips), never
    smaller than ``min_pixels`` (3-pt pages).
    """
    scale = 1.0 if kind is DocKind.IMAGE else settings.dpi / 72.0
    height, width = clamp_aspect(max(page.height_pt * scale, 1.0), max(page.width_pt * scale, 1.0))
    h, w = smart_resize(round(height), round(width), settings.min_pixels, settings.max_pixels)
    # Rounding to multiples of 32 can push a clamped strip back past the processor's limit (a 14,400
    # x 20 pt strip became 32 x 7232 = 226:1 and the processor raised): cut the long side, which
    # only removes pixels.
    limit = MAX_ASPECT - 1
    if h > w * limit:
        h = w * limit
    elif w > h * limit:
        w = h * limit
    return h, w


def image_tokens(height: int, width: int) -> int:
    """Image-pad tokens for an image already resized to multiples of 32 (without the wrap
    tokens)."""
    return (height // FACTOR) * (width // FACTOR)
