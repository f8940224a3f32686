"""Extraction schemas for papers, slide decks, forms and tables."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from docvl.schemas.base import Page, Pages, Quote, ShortText, SourcedAmount, SourcedText, Strict


class Author(Strict):
    dedup_keys: ClassVar[tuple[str, ...]] = ("name",)

    name: str
    affiliation: str | None = None
    page: Page


class Section(Strict):
    dedup_keys: ClassVar[tuple[str, ...]] = ("heading",)

    heading: str
    summary: str | None = None
    pages: Pages = Field(default_factory=list)


class Finding(Strict):
    dedup_keys: ClassVar[tuple[str, ...]] = ("finding",)

    finding: str
    pages: Pages = Field(default_factory=list)
    quote: Quote = None


class ScientificPaper(Strict):
    """A research paper: bibliographic data, structure and main findings."""

    title: SourcedText | None = None
    authors: list[Author] = Field(default_factory=list)
    abstract: SourcedText | None = None
    keywords: list[ShortText] = Field(default_factory=list)
    sections: list[Section] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    references_count: SourcedAmount | None = Field(
        None, description="number of entries in the references"
    )


class Slide(Strict):
    dedup_keys: ClassVar[tuple[str, ...]] = ("slide",)

    slide: int = Field(ge=1, description="slide number (the page number of the slide)")
    title: str | None = None
    bullets: list[ShortText] = Field(default_factory=list)
    notes: str | None = None
    page: Page


class SlideDeck(Strict):
    """An outline of a slide deck, one entry per slide."""

    title: SourcedText | None = None
    slides: list[Slide] = Field(default_factory=list)


class FormField(Strict):
    """One filled-in field: its label as printed and its value (null when blank)."""

    dedup_keys: ClassVar[tuple[str, ...]] = ("key",)

    key: str
    value: str | None = None
    checked: bool | None = Field(None, description="for checkboxes: whether it is ticked")
    page: Page
    quote: Quote = None


class FormData(Strict):
    """Key-value pairs of a form."""

    form_title: SourcedText | None = None
    fields: list[FormField] = Field(default_factory=list)


class TableRow(Strict):
    """One row: its cells in column order, as printed."""

    dedup_keys: ClassVar[tuple[str, ...]] = ("table", "cells")

    table: int = Field(1, ge=1, description="which table on the document, counting from 1")
    cells: list[str | None]
    page: Page
    quote: Quote = None


class TableHeader(Strict):
    dedup_keys: ClassVar[tuple[str, ...]] = ("table",)

    table: int = Field(ge=1)
    caption: str | None = None
    columns: list[str] = Field(default_factory=list)
    page: Page


class Tables(Strict):
    """Tables as header plus rows (rows of a table that continues across pages share its number)."""

    tables: list[TableHeader] = Field(default_factory=list)
    rows: list[TableRow] = Field(default_factory=list)
