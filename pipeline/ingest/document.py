"""Types that flow from loading to planning and rendering."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class DocKind(StrEnum):
    PDF = "pdf"
    PPTX = "pptx"
    PPT = "ppt"
    IMAGE = "image"


@dataclass(frozen=True)
class PageInfo:
    """One page as loaded: geometry after /Rotate and its text layer. ``page`` counts from 1."""

    page: int
    #: Size in PDF points after /Rotate; for an image document, its size in pixels (the budget then
    #: scales it without a DPI factor, see ``tokens.page_pixels``).
    width_pt: float
    height_pt: float
    text: str = ""
    #: False for scans and image-only slides: the text is absent or not worth trusting.
    has_text_layer: bool = False


@dataclass
class LoadedDocument:
    """A document ready to plan and render.

    ``render_path`` is what the renderer opens: the PDF itself, the PDF LibreOffice made from slides
    (inside ``workdir``), or the image file.
    """

    path: Path
    kind: DocKind
    sha256: str
    render_path: Path
    pages: list[PageInfo]
    warnings: list[str] = field(default_factory=list)
    password: str | None = field(default=None, repr=False)
    #: Temporary directory owned by this document (slide conversions); removed by ``close``.
    workdir: Path | None = None

    @property
    def page_count(self) -> int:
        return len(self.pages)

    def close(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> LoadedDocument:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
