"""The result envelope: one JSON record per document (``docvl run`` writes them as JSONL).

``docvl schemas export`` writes :func:`envelope_json_schema`. Task outputs keep their own schemas
inside: ``summary`` is a :class:`~schemas.DocumentSummary`, ``answer.data`` an
:class:`~schemas.Answer`, and ``extraction.data`` follows the schema named in
``extraction.schema_name`` (version in ``schema_version``).

Usage accounting: ``usage.input_tokens`` is the sum of the prompt tokens the backend reported for
every call made for this document (window prefills, re-asks, reduce and completeness calls). When
every first attempt validates and no reduce or completeness call is needed, it equals
``plan.input_tokens`` (the sum of the plan's window ``input_tokens``) with an exact counter.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from docvl.pipeline.errors import ErrorRecord
from docvl.schemas import Answer, DocumentSummary

#: 1.1: ``plan.windows[]`` is the plan's window type and gained ``spans``.
#: 1.2: grounding statuses are ``grounded``/``page_only``/``ungrounded`` (``unverifiable`` became
#: ``page_only``, and the counts with them); a grounded item tells where: ``page``, ``bbox`` and
#: ``match`` (the matching stage); windows carry their expected ``output_tokens``; extraction
#: completeness reports per page (``completeness.pages``); grounding items carry
#: ``model_confidence`` and ``confidence`` (None without token log-probabilities).
#: 1.3: an error record of a reply that failed to parse or validate (or was cut off) keeps the
#: reply: ``raw_reply`` (its first 64 KiB) and ``raw_reply_truncated``.
ENVELOPE_VERSION = "1.3"
Status = Literal["ok", "partial", "failed", "skipped"]
#: ``grounded``: the evidence is found on a cited page's text layer. ``page_only``: the cited pages
#: exist but the evidence cannot be checked there (no text layer, or nothing to compare).
#: ``ungrounded``: checkable and not found, or a cited page does not exist, or no page is cited.
GroundingStatus = Literal["grounded", "page_only", "ungrounded"]
#: How the evidence matched the text layer, from strictest to loosest: the raw text, whitespace
#: collapsed, case folded and normalised (NFKC, quotes, dashes, hyphenation, punctuation), fuzzy.
MatchStage = Literal["exact", "whitespace", "casefold", "fuzzy"]


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    #: Backend requests (a batched first attempt of N tasks counts N).
    requests: int = 0
    cost_usd: float = 0.0

    def add(self, other: Usage) -> Usage:
        """Sum in place (cost recomputed by :meth:`priced`); returns self."""
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.requests += other.requests
        self.cost_usd = round(self.cost_usd + other.cost_usd, 8)
        return self

    def priced(self, input_per_mtok: float, output_per_mtok: float) -> Usage:
        self.cost_usd = round(
            (self.input_tokens * input_per_mtok + self.output_tokens * output_per_mtok) / 1e6, 8
        )
        return self


class Source(BaseModel):
    path: str
    sha256: str | None = None
    kind: str | None = None
    pages: int = 0
    #: The page selection analysed (``--pages``, e.g. ``1-5,9``); None: every page.
    selected_pages: str | None = None


class ModelInfo(BaseModel):
    backend: str
    id: str
    context_window: int


class Span(BaseModel):
    """Pages ``first_page..last_page`` (1-based, inclusive) of document ``doc`` (its index in the
    plan)."""

    doc: int
    first_page: int
    last_page: int


class Window(BaseModel):
    """One prompt: the one window type from the packer through the plan to the result envelope.

    ``first_page``/``last_page`` are the pages of the document whose plan or record holds the
    window; ``spans`` lists every document's pages in it (several when windows are shared across
    documents).
    """

    index: int
    first_page: int
    last_page: int
    #: Input tokens the model receives: framing, instruction, headers and pages (of every document
    #: in it), summed over the tasks when several share the window's prefill.
    input_tokens: int
    images: int = 0
    #: The reply this window is expected to need (output-aware extraction segments; else 0).
    output_tokens: int = 0
    spans: list[Span] = Field(default_factory=list)
    #: Tasks run on this window.
    tasks: list[str] = Field(default_factory=list)
    #: Other documents whose pages share this window (cross-document questions), by path.
    shared_with: list[str] = Field(default_factory=list)


class PlanSummary(BaseModel):
    exact_tokens: bool | None = None
    input_tokens: int = 0
    estimated_cost_usd: float = 0.0
    windows: list[Window] = Field(default_factory=list)


class GroundingItem(BaseModel):
    #: Where the record sits in the data, e.g. ``line_items[3]`` or ``total``.
    path: str
    pages: list[int] = Field(default_factory=list)
    status: GroundingStatus
    #: What was looked for: ``quote`` or ``value``.
    checked: Literal["quote", "value", "none"] = "none"
    detail: str | None = None
    #: Grounded items: the page the evidence was found on (one of ``pages``).
    page: int | None = None
    #: Grounded items: ``[x0, y0, x1, y1]`` around the matched words, in PDF points on ``page`` as
    #: displayed (after /Rotate and the crop box), origin top-left, y downwards (scale by
    #: ``image_width / page_width_pt`` for pixels). None when the matched text has no word boxes
    #: (slide text from python-pptx, form field values, images).
    bbox: tuple[float, float, float, float] | None = None
    #: Grounded items: the loosest stage any piece of evidence needed.
    match: MatchStage | None = None
    #: How sure the model was of this record, in (0, 1]: the lowest of its fields' exp(mean token
    #: log-probability) in the reply that produced it, a window's or a completeness re-ask's
    #: (:mod:`docvl.pipeline.tasks.confidence`). None when the backend gave no log-probabilities.
    model_confidence: float | None = None
    #: ``model_confidence`` times a factor for ``status``: grounded 1.0, page_only 0.8,
    #: ungrounded 0.3 (``GROUNDING_FACTORS``). Both are ranking signals for review (look at the
    #: lowest first), NOT calibrated probabilities that the record is correct.
    confidence: float | None = None


class Grounding(BaseModel):
    grounded: int = 0
    page_only: int = 0
    ungrounded: int = 0
    items: list[GroundingItem] = Field(default_factory=list)


class Conflict(BaseModel):
    """A scalar field with different values in different windows; the first (page order) was
    kept."""

    path: str
    values: list[Any]
    kept: Any


class PageCompleteness(BaseModel):
    """What one page holds against what came back from it (extraction into record lists)."""

    page: int
    #: Records of the record lists that cite this page.
    records: int
    #: Table-like lines in the page's text layer (3 or more numbers on a line); None without a
    #: text layer.
    expected_rows: int | None = None
    #: ``complete``; ``short``: fewer records than table-like lines; ``uncited``: nothing cites it
    #: (and it has no table-like line).
    status: Literal["complete", "short", "uncited"]


class Completeness(BaseModel):
    #: Pages no record (or key point / answer) cites, after any completeness re-ask.
    uncited_pages: list[int] = Field(default_factory=list)
    #: Pages re-asked because nothing cited them, fewer records than table-like lines did, or
    #: their last record looked cut by the page break after it (asked again with the next page).
    reasked_pages: list[int] = Field(default_factory=list)
    added_records: int = 0
    #: Per page, after any re-ask (extraction into record lists).
    pages: list[PageCompleteness] = Field(default_factory=list)


class SummaryOutput(BaseModel):
    data: DocumentSummary
    completeness: Completeness = Field(default_factory=Completeness)


class AnswerOutput(BaseModel):
    question: str
    data: Answer
    grounding: Grounding = Field(default_factory=Grounding)
    #: For a cross-document question: every document the answer was drawn from (paths).
    documents: list[str] = Field(default_factory=list)


class ExtractionOutput(BaseModel):
    schema_name: str
    schema_version: str
    data: dict[str, Any]
    grounding: Grounding = Field(default_factory=Grounding)
    conflicts: list[Conflict] = Field(default_factory=list)
    completeness: Completeness = Field(default_factory=Completeness)


class Timings(BaseModel):
    """Seconds per stage. ``prefill``/``generate`` add up what the backend reported."""

    load: float = 0.0
    plan: float = 0.0
    render: float = 0.0
    prefill: float = 0.0
    #: Prompts computed from scratch. Several tasks on one window share one: a summary plus an
    #: extraction of a one-window document shows 1 (the second request reuses the first's KV cache).
    prefills: int = 0
    generate: float = 0.0
    reduce: float = 0.0
    total: float = 0.0


M = TypeVar("M", bound=BaseModel)


class ResultEnvelope(BaseModel):
    """One document's record: what went in, what came out, what failed, what it cost."""

    schema_version: str = ENVELOPE_VERSION
    source: Source
    status: Status
    errors: list[ErrorRecord] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    model: ModelInfo | None = None
    plan: PlanSummary = Field(default_factory=PlanSummary)
    summary: SummaryOutput | None = None
    answer: AnswerOutput | None = None
    extraction: ExtractionOutput | None = None
    usage: Usage = Field(default_factory=Usage)
    timings: Timings = Field(default_factory=Timings)

    def extraction_as(self, model: type[M]) -> M:
        """The extracted data as an instance of the user's pydantic class ``model`` (the schema
        given with ``--schema module:Class``, or a built-in such as ``schemas.Invoice``).

        Raises LookupError when the record holds no extraction (its ``errors`` say why), and
        pydantic's ValidationError when the data does not fit ``model``.
        """
        if self.extraction is None:
            codes = ", ".join(e.code for e in self.errors) or "extract was not among the tasks"
            raise LookupError(f"{self.source.path}: no extraction ({self.status}: {codes})")
        return model.model_validate(self.extraction.data)


def envelope_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one result record."""
    schema = ResultEnvelope.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "docvl result"
    return schema
