"""Outputs of the ``summary`` and ``ask`` tasks."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from docvl.schemas.base import Confidence, Page, Pages, Quote, ShortText, Strict, Text


class KeyPoint(Strict):
    dedup_keys: ClassVar[tuple[str, ...]] = ("point",)

    point: str
    pages: Pages = Field(default_factory=list)


class DocumentSummary(Strict):
    """A faithful summary of the whole document with the pages behind each key point."""

    title: ShortText | None = None
    summary: str
    key_points: list[KeyPoint] = Field(default_factory=list)


class QuoteRef(Strict):
    """A verbatim excerpt supporting an answer."""

    dedup_keys: ClassVar[tuple[str, ...]] = ("page", "text")

    page: Page
    text: str
    #: Document number from the ``<document N: ...>`` header when several documents share a prompt.
    document: int | None = Field(None, ge=1)


class Answer(Strict):
    """An answer to the user's question, citing the pages (and quotes) it rests on."""

    answer: Text
    #: False when the documents do not contain the answer (then ``answer`` says so).
    found: bool = True
    pages: Pages = Field(default_factory=list)
    quotes: list[QuoteRef] = Field(default_factory=list)
    confidence: Confidence | None = None


__all__ = ["Answer", "DocumentSummary", "KeyPoint", "Page", "Quote", "QuoteRef"]
