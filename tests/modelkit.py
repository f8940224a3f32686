"""Shared helpers of the backend tests: a small bounded schema and two pages of random pixels."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from docvl.pipeline.plan.prompt import ImagePart, Part, document_header, page_marker, page_text


class Summary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(max_length=24)
    kind: Literal["report", "invoice", "letter", "other"]
    pages: list[int] = Field(max_length=3)


def summary_schema() -> dict[str, Any]:
    schema = Summary.model_json_schema()
    schema["properties"]["pages"]["items"] = {"type": "integer", "minimum": 1, "maximum": 2}
    return schema


def page_image(seed: int, height: int, width: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def two_pages() -> list[Part]:
    parts: list[Part | None] = [
        document_header(1, "report.pdf", 2),
        page_marker(1),
        ImagePart(1, 1, 256, 320, page_image(1, 256, 320)),
        page_text("Annual report 2024.", 100),
        page_marker(2),
        ImagePart(1, 2, 320, 256, page_image(2, 320, 256)),
        page_text("Revenue grew by 7%.", 100),
    ]
    return [p for p in parts if p is not None]
