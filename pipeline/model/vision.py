"""Page images into Qwen3-VL's vision encoder, in bounded chunks (the transformers backend)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from docvl.pipeline.errors import UsageError
from docvl.pipeline.ingest.packed import unpacked
from docvl.pipeline.plan.prompt import ImagePart, Part

#: Pixels per chunk when a window's images are encoded (:func:`encode_images`):
#: 8 M pixels are about 31,000 patches, 190 MB of float32 ``pixel_values`` (4 A4 pages at 150 DPI).
ENCODE_CHUNK_PIXELS = 8 * 1024 * 1024


def pixel_chunks(images: Sequence[Any], budget: int) -> list[list[Any]]:
    """Consecutive groups of images of at most ``budget`` pixels each (a larger image alone)."""
    chunks: list[list[Any]] = []
    size = 0
    for image in images:
        pixels = image.width * image.height
        if not chunks or size + pixels > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(image)
        size += pixels
    return chunks


def page_images(content: Sequence[Part]) -> list[Any]:
    images = []
    for part in content:
        if isinstance(part, ImagePart):
            if part.image is None:
                raise UsageError(f"page {part.page} of document {part.doc} has no rendered image")
            images.append(part.image)
    return images


def encode_images(
    processor: Any, model: Any, device: Any, dtype: Any, images: Sequence[Any]
) -> tuple[Any, Any]:
    """``(image_grid_thw, vision encoder outputs)`` for ``images``, or ``(None, None)``.

    The images go through the image processor and the vision encoder in chunks of at most
    :data:`ENCODE_CHUNK_PIXELS` pixels, so a window's float32 ``pixel_values`` (about 5 GB
    for 160 A4 pages) never exist at once: only one chunk's (about 200 MB), plus the encoder's
    outputs, one row per image token; PNG-packed pages (:mod:`docvl.pipeline.ingest.packed`) are
    decoded a chunk at a time. The vision encoder attends within each image, so the
    outputs equal one pass over all images (tests/test_backends_transformers.py).
    """
    import torch
    from transformers.models.qwen3_vl.modeling_qwen3_vl import (
        BaseModelOutputWithDeepstackFeatures,
    )

    if not images:
        return None, None
    grids: list[Any] = []
    pooled: list[Any] = []
    deepstack: list[list[Any]] = []
    for chunk in pixel_chunks(images, ENCODE_CHUNK_PIXELS):
        decoded = [unpacked(image) for image in chunk]  # packed pages stay packed
        batch = processor.image_processor(images=decoded, return_tensors="pt")
        del decoded
        grid = batch["image_grid_thw"]
        pixels = batch.pop("pixel_values").to(device, dtype)
        del batch
        with torch.inference_mode():
            out = model.model.get_image_features(pixels, grid.to(device), return_dict=True)
        del pixels
        grids.append(grid)
        pooled += out.pooler_output
        if not deepstack:
            deepstack = [[] for _ in out.deepstack_features]
        for layer, features in zip(deepstack, out.deepstack_features, strict=True):
            layer += features
    # Per-image tuples, as ``get_image_features`` returns them (its annotation says Tensor).
    fields: dict[str, Any] = {
        "pooler_output": tuple(pooled),
        "deepstack_features": [tuple(f) for f in deepstack],
    }
    encoded = BaseModelOutputWithDeepstackFeatures(**fields)
    return torch.cat(grids), encoded
