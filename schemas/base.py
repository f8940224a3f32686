"""Building blocks shared by the built-in schemas.

The models state the contract only: every model forbids extra keys, page numbers start at 1, a
confidence lies in [0, 1]. Nothing caps how much a document may hold (no list ``max_length``, no
string ``max_length``, no arbitrary number range): an 800-line purchase order is valid. The bounds a
random-weight model needs to terminate are added by :func:`docvl.schemas.decoder.decoder_schema`,
only when ``Settings.decoder_bounds`` asks for them.

Numeric invariants (line items add up to the subtotal, ...) are declared per model in
``invariants`` and checked by :func:`docvl.schemas.invariants.check_invariants`.

Provenance convention (what :mod:`docvl.pipeline.tasks.grounding` and
:mod:`docvl.pipeline.tasks.reduce` rely on): every extracted record carries ``page`` (or ``pages``)
with the 1-based page number(s) from the ``<page N>`` markers, and optionally ``quote``, a short
verbatim excerpt of the page that supports it. Scalar document-level fields are :class:`SourcedText`
/ :class:`SourcedAmount` objects for the same reason.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from docvl.schemas.invariants import Invariant

Page = Annotated[int, Field(ge=1, description="1-based page number from the <page N> marker")]
Pages = Annotated[list[Page], Field(description="pages that support this item")]
Quote = Annotated[
    str | None, Field(description="short verbatim excerpt of the page that supports the value")
]
ShortText = str
Text = str
Amount = float
Quantity = float
Confidence = Annotated[float, Field(ge=0.0, le=1.0)]


class Strict(BaseModel):
    """Base of every built-in schema model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    #: Fields that identify a record when lists from several windows are merged
    #: (``docvl.pipeline.tasks.reduce``). Empty: every field except provenance (page, pages, quote).
    dedup_keys: ClassVar[tuple[str, ...]] = ()
    #: Numeric checks on the final output (:func:`docvl.schemas.invariants.check_invariants`); a
    #: failed one is a warning on the record.
    invariants: ClassVar[tuple[Invariant, ...]] = ()


class SourcedText(Strict):
    """A text value with the page it was read from."""

    value: str | None = None
    page: Page | None = None
    quote: Quote = None


class SourcedDate(Strict):
    """A date as printed; ISO 8601 (YYYY-MM-DD) when the date is unambiguous."""

    value: str | None = None
    page: Page | None = None
    quote: Quote = None


class SourcedAmount(Strict):
    """A number (money, count) with the page it was read from."""

    value: Amount | None = None
    page: Page | None = None
    quote: Quote = None
