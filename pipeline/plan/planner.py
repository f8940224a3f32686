"""From loaded documents to an exactly counted plan of prompts (windows)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from docvl.pipeline.errors import DocvlError, EmptyDocument, ErrorRecord
from docvl.pipeline.ingest.document import DocKind, LoadedDocument, PageInfo
from docvl.pipeline.ingest.geometry import page_pixels
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.pack import PackItem, pack, segment
from docvl.pipeline.plan.prompt import ImagePart, Part, document_header, page_marker, page_text
from docvl.pipeline.result import Span, Window
from docvl.pipeline.settings import Settings, page_selected


class PageTokens(BaseModel):
    page: int
    #: Image tokens including <|vision_start|>/<|vision_end|>.
    image: int
    #: Text tokens of the page: its <page N> marker and its text layer (0 without one).
    text: int
    width: int
    height: int
    has_text_layer: bool


class DocumentPlan(BaseModel):
    path: str
    kind: str | None = None
    status: Literal["ok", "failed"] = "ok"
    #: ``context``: windows as large as the context allows; ``segments``: output-aware page
    #: segments for extraction into record lists (see :func:`plan_loaded`).
    strategy: Literal["context", "segments"] = "context"
    sha256: str | None = None
    pages: int = 0
    page_tokens: list[PageTokens] = Field(default_factory=list)
    windows: list[Window] = Field(default_factory=list)
    input_tokens: int = 0
    #: Input at list price plus the reserved output of every window (an upper bound for one pass).
    estimated_cost_usd: float = 0.0
    warnings: list[str] = Field(default_factory=list)
    error: ErrorRecord | None = None


class Plan(BaseModel):
    context_window: int
    max_output_tokens: int
    #: True when counts come from the model's tokenizer, False for the documented estimate.
    exact_tokens: bool
    #: Largest framing (system prompt, chat template, instruction) over the tasks.
    framing_tokens: int
    documents: list[DocumentPlan]


def page_content(doc: int, page: PageInfo, kind: DocKind, settings: Settings) -> list[Part]:
    height, width = page_pixels(page, kind, settings)
    parts: list[Part] = [page_marker(page.page), ImagePart(doc, page.page, height, width)]
    text = page_text(page.text, settings.max_text_chars_per_page) if settings.include_text else None
    if text is not None:
        parts.append(text)
    return parts


def window_content(
    docs: Sequence[LoadedDocument], spans: Iterable[Span], settings: Settings
) -> list[Part]:
    """The content parts of one window, without images (the runner renders and attaches them)."""
    parts: list[Part] = []
    for span in spans:
        doc = docs[span.doc]
        parts.append(document_header(span.doc + 1, doc.path.name, doc.page_count))
        for info in doc.pages[span.first_page - 1 : span.last_page]:
            parts.extend(page_content(span.doc, info, doc.kind, settings))
    return parts


def _page_tokens(
    doc: int, loaded: LoadedDocument, settings: Settings, counter: TokenCounter
) -> list[PageTokens]:
    out = []
    for info in loaded.pages:
        parts = page_content(doc, info, loaded.kind, settings)
        image = next(p for p in parts if isinstance(p, ImagePart))
        out.append(
            PageTokens(
                page=info.page,
                image=counter.part(image),
                text=sum(counter.part(p) for p in parts if p is not image),
                width=image.width,
                height=image.height,
                has_text_layer=info.has_text_layer,
            )
        )
    return out


#: Expected reply tokens of an extraction per text-layer token of a page: every record repeats its
#: text as a quote, adds its parsed values, field names and its page. Measured on the synthetic
#: documents of pipeline/dev/synth.py: 2.5 (tables, invoices) to 3.55 (purchase-order lines); the
#: largest is used, and a reply that still overflows is split (bench/RESULTS-extract.md). A page
#: without a text layer is budgeted as a dense page.
REPLY_PER_TEXT_TOKEN = 3.5
REPLY_PER_PAGE = 40
REPLY_SCANNED_PAGE = 1500


def expected_reply_tokens(page: PageTokens) -> int:
    """The reply an extraction is expected to need for this page (plans output-aware segments)."""
    if not page.has_text_layer:
        return REPLY_SCANNED_PAGE
    return int(page.text * REPLY_PER_TEXT_TOKEN) + REPLY_PER_PAGE


def _cost(input_tokens: int, windows: int, settings: Settings) -> float:
    output = windows * settings.max_output_tokens
    return round(
        (input_tokens * settings.price_input_per_mtok + output * settings.price_output_per_mtok)
        / 1e6,
        6,
    )


def _no_pages(settings: Settings, doc: LoadedDocument) -> EmptyDocument:
    return EmptyDocument(
        f"--pages {settings.pages} selects none of the document's {doc.page_count} pages"
    )


def plan_loaded(
    docs: Sequence[LoadedDocument | DocvlError],
    settings: Settings,
    counter: TokenCounter,
    instructions: Mapping[str, str],
    *,
    segments: bool = False,
) -> Plan:
    """Plan already loaded documents; failures passed in as errors stay failed records, in order.

    ``instructions`` maps each task to its instruction. With several tasks a window's
    ``input_tokens`` is what the model receives over all of them: the shared content once per
    request plus each request's framing.

    Windows are as large as the context allows (strategy ``context``: summaries and questions
    reason across pages). With ``segments`` (extraction into record lists) each document is cut
    into page segments whose expected reply (:func:`expected_reply_tokens`) also fits
    ``settings.max_output_tokens``, neighbours sharing a page (strategy ``segments``).
    """
    framings = [counter.framing(i) for i in instructions.values()]
    framing = max(framings)
    budget = settings.context_window - settings.max_output_tokens
    selection = settings.page_ranges()
    plans: list[DocumentPlan] = []
    groups: list[list[int]] = []
    items: dict[int, list[PackItem]] = {}
    headers: dict[int, int] = {}
    for i, doc in enumerate(docs):
        if isinstance(doc, DocvlError):
            plans.append(DocumentPlan(path="", status="failed", error=doc.record()))
            continue
        tokens = _page_tokens(i, doc, settings, counter)
        plans.append(
            DocumentPlan(
                path=str(doc.path),
                kind=doc.kind.value,
                sha256=doc.sha256,
                pages=doc.page_count,
                page_tokens=tokens,
                warnings=list(doc.warnings),
            )
        )
        items[i] = [
            PackItem(i, t.page, t.image + t.text, expected_reply_tokens(t))
            for t in tokens
            if page_selected(selection, t.page)
        ]
        if not items[i]:
            plans[i] = plans[i].model_copy(
                update={"status": "failed", "error": _no_pages(settings, doc).record()}
            )
            continue
        headers[i] = counter.part(document_header(i + 1, doc.path.name, doc.page_count))
        if settings.share_windows and groups:
            groups[-1].append(i)
        else:
            groups.append([i])
    header_list = [headers.get(i, 0) for i in range(len(docs))]
    for group in groups:
        try:
            packer = segment if segments and len(group) == 1 else pack
            packed = packer(
                [it for i in group for it in items[i]],
                budget=budget,
                framing=framing,
                header_tokens=header_list,
                max_images=settings.max_images_per_request,
                **({"output_budget": settings.max_output_tokens} if packer is segment else {}),
            )
            for i in group:
                plans[i].strategy = "segments" if packer is segment else "context"
        except DocvlError as exc:
            for i in group:
                plans[i] = plans[i].model_copy(
                    update={"status": "failed", "error": exc.record(), "windows": []}
                )
            continue
        _assign_windows(
            plans, packed, [f - framing for f in framings], list(instructions), settings
        )
    return Plan(
        context_window=settings.context_window,
        max_output_tokens=settings.max_output_tokens,
        exact_tokens=counter.exact,
        framing_tokens=framing,
        documents=plans,
    )


def _assign_windows(
    plans: list[DocumentPlan],
    packed: list[Window],
    framing_deltas: list[int],
    tasks: list[str],
    settings: Settings,
) -> None:
    for w in packed:
        received = sum(w.input_tokens + delta for delta in framing_deltas)
        for s in w.spans:
            plans[s.doc].windows.append(
                w.model_copy(
                    update={
                        "index": len(plans[s.doc].windows),
                        "first_page": s.first_page,
                        "last_page": s.last_page,
                        "input_tokens": received,
                        "tasks": tasks,
                    }
                )
            )
    for p in plans:
        if p.status == "ok":
            p.input_tokens = sum(w.input_tokens for w in p.windows)
            p.estimated_cost_usd = _cost(
                p.input_tokens, len(p.windows) * len(framing_deltas), settings
            )


def plan_paths(
    paths: Sequence[Path],
    settings: Settings,
    counter: TokenCounter,
    instructions: Mapping[str, str],
) -> Plan:
    """Load, plan and close each document; a bad file becomes a failed record, never an
    exception."""
    loaded: list[LoadedDocument | DocvlError] = []
    try:
        for path in paths:
            try:
                loaded.append(load_document(path, settings))
            except DocvlError as exc:
                loaded.append(exc)
        plan = plan_loaded(loaded, settings, counter, instructions)
    finally:
        for doc in loaded:
            if isinstance(doc, LoadedDocument):
                doc.close()
    for path, doc_plan in zip(paths, plan.documents, strict=True):
        doc_plan.path = str(path)
    return plan
