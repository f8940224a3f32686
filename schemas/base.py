"""Building blocks shared by the built-in schemas.

Every field is bounded (string ``max_length``, number ``ge``/``le``, list ``max_length``) and every
model forbids extra keys, so the JSON Schema sent to a constrained decoder describes a finite
language (see ``schemas.decoder``). Validation itself stays with pydantic.

Provenance convention (what :mod:`pipeline.tasks.grounding` and :mod:`pipeline.tasks.reduce` rely
on): every extracted record carries ``page`` (or ``pages``) with the 1-based page number(s) from the
``<page N>`` markers, and optionally ``quote``, a short verbatim excerpt of the page that supports
it. Scalar document-level fields are :class:`SourcedText` / :class:`SourcedAmount` objects for the
same reason.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

#: Largest page number a reply may cite (a bound for the decoder, far above any real document).
MAX_PAGE = 100_000
MAX_AMOUNT = 1e12

Page = Annotated[
    int, Field(ge=1, le=MAX_PAGE, description="1-based page number from the <page N> marker")
]
Pages = Annotated[list[Page], Field(max_length=20, description="pages that support this item")]
Quote = Annotated[
    str | None,
    Field(max_length=300, description="short verbatim excerpt of the page that supports the value"),
]
ShortText = Annotated[str, Field(max_length=200)]
Text = Annotated[str, Field(max_length=1000)]
Amount = Annotated[float, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
Quantity = Annotated[float, Field(ge=-1e9, le=1e9)]
Confidence = Annotated[float, Field(ge=0.0, le=1.0)]


class Strict(BaseModel):
    """Base of every built-in schema model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    #: Fields that identify a record when lists from several windows are merged
    #: (``pipeline.tasks.reduce``). Empty: every field except provenance (page, pages, quote).
    dedup_keys: ClassVar[tuple[str, ...]] = ()


class SourcedText(Strict):
    """A text value with the page it was read from."""

    value: str | None = Field(None, max_length=300)
    page: Page | None = None
    quote: Quote = None


class SourcedDate(Strict):
    """A date as printed; ISO 8601 (YYYY-MM-DD) when the date is unambiguous."""

    value: str | None = Field(None, max_length=40)
    page: Page | None = None
    quote: Quote = None


class SourcedAmount(Strict):
    """A number (money, count) with the page it was read from."""

    value: Amount | None = None
    page: Page | None = None
    quote: Quote = None
