"""Page images kept PNG-compressed until a model input needs their pixels (issue 9, model-path
memory).

A window holds every page image it sends (up to ~190 pages at the default window) and a document's
windows are rendered while earlier ones wait for the model: as RGB pixels, 619 pages at the default
page budget are 2.4 GB. :func:`pack` keeps a page as a PIL image opened lazily over its PNG bytes
(typically 5-15% of the pixels for a text page): its size and mode are known, nothing is decoded.
:func:`unpacked` decodes a separate copy (the vision encoder, a chunk at a time), leaving the packed
image compressed; any other use of it (``convert``, ``save``, ``resize``) decodes it in place, as
PIL does for every lazily opened image.
"""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageFile

#: zlib level of the packed PNGs: 1 is ~3x faster than the default 6 and ~10% larger on pages.
PNG_LEVEL = 1


def pack(image: Image.Image) -> Image.Image:
    """``image`` as a lazily decoded PNG (returned as is when already packed)."""
    if packed_bytes(image) is not None:
        return image
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=PNG_LEVEL)
    buf.seek(0)
    return Image.open(buf)


def packed_bytes(image: Image.Image) -> bytes | None:
    """The PNG bytes behind a packed image not decoded yet, else None."""
    fp = getattr(image, "fp", None)
    if (
        isinstance(image, ImageFile.ImageFile)
        and image.format == "PNG"
        and isinstance(fp, io.BytesIO)
        and not getattr(image, "_im", None)
    ):
        return fp.getvalue()
    return None


def unpacked(image: Image.Image) -> Image.Image:
    """The pixels of ``image`` (RGB); a packed image is decoded into a new image and stays
    packed."""
    data = packed_bytes(image)
    if data is None:
        return image if image.mode == "RGB" else image.convert("RGB")
    with Image.open(io.BytesIO(data)) as fresh:
        return fresh.convert("RGB")


def digest(image: Image.Image) -> bytes:
    """A digest of the image's content: of the PNG bytes for a packed image (no decoding), of
    mode, size and pixels otherwise."""
    data = packed_bytes(image)
    if data is not None:
        return hashlib.sha256(b"PNG" + data).digest()
    return hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).digest()
