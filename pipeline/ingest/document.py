"""Types that flow from loading to planning and rendering."""

from __future__ import annotations

import shutil
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, overload


class DocKind(StrEnum):
    PDF = "pdf"
    PPTX = "pptx"
    PPT = "ppt"
    IMAGE = "image"


@dataclass(frozen=True, slots=True)
class Word:
    """A word of a page's text layer and its box.

    ``text`` is ``PageInfo.text[start:end]``. The box is in PDF points on the page as displayed
    (after /Rotate and the crop box): origin at the top-left corner, y downwards, within
    ``0..width_pt`` x ``0..height_pt``; multiply by ``image_width / width_pt`` for pixels of the
    rendered page.
    """

    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    start: int
    end: int


class Words(Sequence[Word]):
    """A page's words in reading order, stored compactly (offsets and float32 boxes in arrays:
    about 24 bytes a word instead of ~230 for a tuple of :class:`Word`; a 352-page book has 109,384
    words). Indexing builds a :class:`Word` on demand.

    Every word is a span of the page text: offsets are increasing and spans do not overlap.
    """

    __slots__ = ("_boxes", "_spans", "_text")

    def __init__(
        self, text: str = "", items: Iterable[tuple[int, int, float, float, float, float]] = ()
    ) -> None:
        spans: array[int] = array("I")
        boxes: array[float] = array("f")
        end = 0
        for start, stop, x0, y0, x1, y1 in items:
            if not end <= start < stop <= len(text):
                raise ValueError(f"word span {start}:{stop} is not after {end} within the text")
            spans.extend((start, stop))
            boxes.extend((x0, y0, x1, y1))
            end = stop
        self._text = text
        self._spans = spans
        self._boxes = boxes

    @classmethod
    def trusted(cls, text: str, spans: array[int], boxes: array[float]) -> Words:
        """From arrays already in order: ``spans`` (start, end, ...) and ``boxes`` (x0, y0, x1,
        y1, ...); no check, for loaders that build them in order."""
        words = cls.__new__(cls)
        words._text = text
        words._spans = spans
        words._boxes = boxes if boxes.typecode == "f" else array("f", boxes)
        return words

    def __len__(self) -> int:
        return len(self._spans) // 2

    @overload
    def __getitem__(self, index: int) -> Word: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Word, ...]: ...

    def __getitem__(self, index: int | slice) -> Word | tuple[Word, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        n = len(self)
        if not -n <= index < n:
            raise IndexError("word index out of range")
        i = index % n
        start, end = self._spans[2 * i], self._spans[2 * i + 1]
        x0, y0, x1, y1 = self._boxes[4 * i : 4 * i + 4]
        return Word(self._text[start:end], x0, y0, x1, y1, start, end)

    def __iter__(self) -> Iterator[Word]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"Words({len(self)} words)"

    def starts(self) -> Sequence[int]:
        """Start offsets in the page text, increasing."""
        return self._spans[0::2]

    def ends(self) -> Sequence[int]:
        """End offsets in the page text, increasing."""
        return self._spans[1::2]

    def box(self, first: int, last: int) -> tuple[float, float, float, float] | None:
        """Union of the boxes of words ``first..last - 1`` (None when the range is empty)."""
        if first >= last:
            return None
        b = self._boxes
        xs0, ys0 = b[4 * first : 4 * last : 4], b[4 * first + 1 : 4 * last : 4]
        xs1, ys1 = b[4 * first + 2 : 4 * last : 4], b[4 * first + 3 : 4 * last : 4]
        return min(xs0), min(ys0), max(xs1), max(ys1)


NO_WORDS = Words()


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
    #: Words of ``text`` with their boxes (PDFs; empty for images and for slides whose text comes
    #: from python-pptx). Not compared nor shown in ``repr``.
    words: Words = field(default=NO_WORDS, compare=False, repr=False)


class PendingText(Protocol):
    """A text layer being extracted elsewhere (:mod:`docvl.pipeline.ingest.textworker`)."""

    def result(self) -> tuple[list[PageInfo], list[str]]:
        """Every page with its text and the extraction's warnings; raises the document's typed
        error (a ``DocvlError``) when the extraction failed."""
        ...

    def cancel(self) -> None:
        """Drop the extraction (the document was closed before it was needed)."""
        ...


class LoadedDocument:
    """A document ready to plan and render.

    ``render_path`` is what the renderer opens: the PDF itself, the PDF LibreOffice made from slides
    (inside ``workdir``), or the image file.

    A PDF's text layer may still be extracting in the text worker (``pending``): ``geometry`` (page
    sizes: all rendering needs) and ``page_count`` are there at once; ``pages`` and ``warnings``
    wait for the text (:meth:`join`) and raise the document's typed error if its extraction failed.
    """

    def __init__(
        self,
        path: Path,
        kind: DocKind,
        sha256: str,
        render_path: Path,
        pages: list[PageInfo],
        warnings: list[str] | None = None,
        password: str | None = None,
        workdir: Path | None = None,
        pending: PendingText | None = None,
    ) -> None:
        self.path = path
        self.kind = kind
        self.sha256 = sha256
        self.render_path = render_path
        self.password = password
        #: Temporary directory owned by this document (slide conversions); removed by ``close``.
        self.workdir = workdir
        self._pages = pages
        self._warnings = warnings if warnings is not None else []
        self._pending = pending
        self._failed: BaseException | None = None
        self._lock = threading.Lock()

    @property
    def pages(self) -> list[PageInfo]:
        """Every page with its text layer (waits for a pending extraction)."""
        self.join()
        return self._pages

    @property
    def warnings(self) -> list[str]:
        """What the user should know about the document (waits for a pending extraction)."""
        self.join()
        return self._warnings

    @property
    def geometry(self) -> list[PageInfo]:
        """Every page with its size; the text may still be pending (empty here until joined)."""
        return self._pages

    @property
    def page_count(self) -> int:
        return len(self._pages)

    @property
    def text_pending(self) -> bool:
        """True while the text layer is still being extracted (or failed and was not read)."""
        return self._pending is not None or self._failed is not None

    def join(self) -> None:
        """Wait for a pending text layer and take it in. Raises the document's typed error when
        the extraction failed, on this and every later call."""
        if self._pending is None and self._failed is None:
            return
        with self._lock:
            if self._failed is not None:
                raise self._failed
            if self._pending is None:
                return
            try:
                pages, warnings = self._pending.result()
            except BaseException as exc:
                self._failed = exc
                raise
            self._pending = None
            self._pages = pages
            self._warnings.extend(warnings)

    def add_warnings(self, warnings: Iterable[str], first: bool = False) -> None:
        """Add warnings without waiting for a pending text layer (``first``: before the others)."""
        if first:
            self._warnings[:0] = list(warnings)
        else:
            self._warnings.extend(warnings)

    def map_warnings(self, fn: Callable[[str], str]) -> None:
        """Apply ``fn`` to the warnings taken in so far (not to a pending layer's)."""
        self._warnings[:] = [fn(w) for w in self._warnings]

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __getstate__(self) -> dict[str, object]:
        self.join()
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"LoadedDocument(path={self.path!r}, kind={self.kind!r}, pages={self.page_count}"
            f"{', text pending' if self.text_pending else ''})"
        )

    def __enter__(self) -> LoadedDocument:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
