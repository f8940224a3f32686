"""The one settings object. Built once (CLI, flow or API) and passed down; never a global.

Every field can come from the environment with the ``DOCVL_`` prefix (``DOCVL_DPI=200``), and every
field is a ``docvl`` flag (``--dpi``) whose help text is the field's ``description``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Qwen3-VL: one image token per 32x32 pixel block (patch 16 x spatial merge 2).
PIXELS_PER_TOKEN = 32 * 32
DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"
#: Bytes one declared pixel may cost while an image is decoded and converted (RGBA plus an RGB
#: copy): ``memory_budget_mb`` caps the pixels an image may declare at budget / this (4 GiB: 536 MP,
#: above the default ``max_page_pixels``; 512 MiB: 67 MP).
MEMORY_BYTES_PER_PIXEL = 8

TaskName = Literal["summary", "ask", "extract"]

_PAGE_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_pages(spec: str) -> list[tuple[int, int]]:
    """``"1-5,9"`` -> ``[(1, 5), (9, 9)]``: 1-based inclusive ranges, in the order written.

    Raises ValueError on anything else (empty parts, page 0, a range that runs backwards).
    """
    ranges: list[tuple[int, int]] = []
    for part in spec.replace(" ", "").split(","):
        m = _PAGE_RANGE.match(part)
        if m is None:
            raise ValueError(f"page selection wants ranges like 1-5,9, got {part!r} in {spec!r}")
        first = int(m.group(1))
        last = int(m.group(2) or first)
        if first < 1 or last < first:
            raise ValueError(f"page range {part!r} must count from 1 and run forwards")
        ranges.append((first, last))
    return ranges


def page_selected(ranges: list[tuple[int, int]] | None, page: int) -> bool:
    """Whether 1-based ``page`` is in ``ranges`` (every page is when there is no selection)."""
    return ranges is None or any(first <= page <= last for first, last in ranges)


class Settings(BaseSettings):
    """What the pipeline computes and how: one field per knob, documented for ``--help``."""

    model_config = SettingsConfigDict(env_prefix="DOCVL_", extra="forbid", frozen=True)

    # --- rendering -----------------------------------------------------------------------------
    renderer: Literal["pymupdf", "pdf2image"] = Field(
        "pymupdf", description="PDF rasteriser: PyMuPDF (fast, default) or pdf2image (Poppler)"
    )
    dpi: int = Field(150, ge=36, le=600, description="render resolution of PDF pages, in DPI")
    #: Per-page pixel budget. Pages are scaled to fit [min_pixels, max_pixels] (the processor's
    #: rule).
    min_pixels: int = Field(
        64 * PIXELS_PER_TOKEN,
        ge=PIXELS_PER_TOKEN,
        description="smallest page image, in pixels (pages are scaled up to it)",
    )
    max_pixels: int = Field(
        1280 * PIXELS_PER_TOKEN,
        ge=PIXELS_PER_TOKEN,
        description="largest page image, in pixels (scaled down to it; 1024 pixels = 1 token)",
    )
    render_workers: int = Field(2, ge=1, le=64, description="processes rendering pages at once")
    text_worker: bool = Field(
        False,
        description="extract PDF text layers in a worker process, concurrently with rendering "
        "(opt-in: worth it for batches on a machine with a free core; bench/RESULTS.md P1)",
    )
    #: LibreOffice converts about one slide per second on a 2-core machine (a 48-slide deck: 56 s).
    slide_timeout_s: float = Field(
        300.0, gt=0, description="seconds LibreOffice may take to convert one slide deck"
    )
    password: str | None = Field(
        None, repr=False, exclude=True, description="password for encrypted PDFs"
    )
    pages: str | None = Field(
        None,
        description="pages to analyse, e.g. 1-5,9 (1-based, inclusive; default: every page)",
    )

    # --- ingest budgets and caps (issue 9): a document over one fails with its own code ------
    max_file_bytes: int = Field(
        512 * 1024 * 1024, gt=0, description="Largest input file in bytes (file_too_large)."
    )
    max_pages: int = Field(
        2000,
        gt=0,
        description="Most pages (PDF), slides (deck) or frames (image) a document may declare "
        "(too_many_pages); checked before any page is read.",
    )
    max_page_pixels: int = Field(
        150_000_000,
        gt=0,
        description="Most pixels an image file, a deck picture, or the images of one PDF page "
        "together may declare, checked before decoding (too_many_pixels: pixel bombs). The "
        "corpus's largest page image is 113 MP (a 1-bit 1200 dpi scan).",
    )
    max_unpacked_bytes: int = Field(
        1024 * 1024 * 1024,
        gt=0,
        description="Most bytes a .pptx may unpack to, checked before conversion "
        "(package_too_large: zip bombs).",
    )
    slide_memory_mb: int = Field(
        2048,
        ge=256,
        description="Address-space limit of LibreOffice during a slide conversion, in MiB "
        "(conversion_memory).",
    )

    # --- prompt / plan -------------------------------------------------------------------------
    context_window: int = Field(
        262_144, gt=0, description="model context, in tokens: a window never exceeds it"
    )
    #: The output budget of one reply, reserved in every window. Extraction into record lists
    #: plans page segments whose expected reply fits it (Qwen3-VL-8B generates up to 32,768).
    max_output_tokens: int = Field(
        16_384, gt=0, description="output tokens reserved for one reply in every window"
    )
    include_text: bool = Field(
        True, description="send each page's text layer with its image (--no-text: images only)"
    )
    #: Cap on the characters of a page's text layer put into the prompt.
    max_text_chars_per_page: int = Field(
        12_000, ge=0, description="characters of a page's text layer put into the prompt, at most"
    )
    max_images_per_request: int = Field(
        512, ge=1, description="page images in one request, at most"
    )
    #: Several documents in one window (questions across documents).
    share_windows: bool = Field(
        False, description="pack several documents into shared windows (questions across them)"
    )
    price_input_per_mtok: float = Field(
        0.08, ge=0, description="USD per 1M input tokens (cost estimates and usage)"
    )
    price_output_per_mtok: float = Field(0.50, ge=0, description="USD per 1M output tokens")

    # --- task ----------------------------------------------------------------------------------
    #: Several tasks on one document share one prefill of its pages.
    tasks: tuple[TaskName, ...] = Field(
        ("summary",), description="task to run; repeat for several tasks sharing one prefill"
    )
    schema_name: str | None = Field(
        None, description="extraction schema: a built-in NAME, module:Class or file.json"
    )
    question: str | None = Field(None, description="the question of the ask task")

    # --- model / backend -----------------------------------------------------------------------
    backend: Literal["transformers", "openai", "scripted"] = Field(
        "transformers",
        description="model backend: local transformers, or an OpenAI-compatible server",
    )
    model: str = Field(DEFAULT_MODEL, description="hub id or local checkpoint directory")
    base_url: str | None = Field(
        None,
        description="OpenAI-compatible API root (vLLM, SGLang, OpenRouter), e.g. "
        "http://localhost:8000/v1",
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="environment variable holding the server's API key"
    )
    request_timeout_s: float = Field(600.0, gt=0, description="seconds one model request may take")
    max_retries: int = Field(4, ge=0, description="retries of a failed request to the server")
    max_concurrency: int = Field(4, ge=1, description="model calls at once")
    max_attempts: int = Field(
        3, ge=1, description="asks of the model per reply until it validates (re-asks included)"
    )
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0: greedy)")
    device: str | None = Field(
        None, description="torch device (default: cuda when available, else cpu)"
    )
    #: Decode against the bounded schema (``docvl.schemas.decoder_schema``: every list, string and
    #: number capped) and derive each reply's token budget from those caps. ONLY for random-weight
    #: models and tests (the tiny model, ``make smoke``: ``DOCVL_DECODER_BOUNDS=1``), which need the
    #: caps to terminate; a real model would silently lose rows past the caps. Off (the default):
    #: the user's schema as written, unbounded, with ``max_output_tokens`` as the budget.
    decoder_bounds: bool = Field(
        False, description="cap lists and strings while decoding (tiny random models only)"
    )

    # --- OpenAI-compatible client (pipeline/model/openai_backend.py) ---------------------------
    request_deadline_s: float = Field(
        1200.0,
        gt=0,
        description=(
            "Wall-time bound of one request to an OpenAI-compatible server, the SDK's retries and "
            "their waits included: each attempt gets only the time left (at most "
            "request_timeout_s), and a request still unanswered then fails as backend_timeout, "
            "which the run does not retry. It bounds the time a window spends on a hung server "
            "(plus at most one backoff wait, 8 s)."
        ),
    )
    extra_body: str = Field(
        "",
        description=(
            "JSON object merged into every chat-completions request body: provider fields such as "
            'OpenRouter\'s {"provider": {"require_parameters": true}}. Given as JSON text or '
            "(from Python) a dict; kept as canonical JSON text, so settings stay hashable."
        ),
    )
    sampling_extras: bool = Field(
        False,
        description=(
            "Send sampling fields outside the OpenAI API (top_k=20, Qwen3-VL's recommendation) "
            "with sampled requests. vLLM and SGLang accept them; api.openai.com and `transformers "
            "serve` reject them (HTTP 400/422), so they are off by default."
        ),
    )

    @field_validator("extra_body", mode="before")
    @classmethod
    def _extra_body_json(cls, value: Any) -> str:
        """``--extra-body '{"provider": ...}'`` or a dict: canonical JSON text of an object."""
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError("extra_body must be a JSON object")
        return json.dumps(value, sort_keys=True) if value else ""

    def extra_body_fields(self) -> dict[str, Any]:
        """``extra_body`` as a dict (empty when unset)."""
        fields: dict[str, Any] = json.loads(self.extra_body) if self.extra_body else {}
        return fields

    # --- orchestration -------------------------------------------------------------------------
    prefect_server: Literal["ephemeral", "local"] = Field(
        "ephemeral",
        description=(
            "Prefect API when PREFECT_API_URL is unset: 'ephemeral' starts Prefect's server for "
            "this process only; 'local' starts one `prefect server start` on 127.0.0.1 in the "
            "background and reuses it across runs (flows/localserver.py)"
        ),
    )

    # --- runtime budgets (flows) ---------------------------------------------------------------
    document_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Wall-time budget of one document in a flow run (seconds); a document over it "
        "is recorded as failed with document_timeout and the batch goes on. None: no limit.",
    )
    memory_budget_mb: int = Field(
        4096,
        ge=0,
        description="Resident memory the whole run may use, in MiB: docvl, its render workers, "
        "LibreOffice and the local Prefect server together (weights of a model loaded on the CPU "
        "are not counted). Past it the documents in progress fail with memory_budget and the "
        "batch goes on. LibreOffice's address-space limit is the smaller of slide_memory_mb and "
        "this budget, the pixel cap the smaller of max_page_pixels and the pixels this budget "
        "can decode (MEMORY_BYTES_PER_PIXEL bytes each), the unpacked-deck cap the smaller of "
        "max_unpacked_bytes and an eighth of it. 0: no budget.",
    )
    lock_wait_s: float = Field(
        3600.0,
        ge=0,
        description="How long a run waits for a document another live docvl process is computing "
        "(its per-document lock) before computing it itself.",
    )

    # --- output --------------------------------------------------------------------------------
    cache_dir: Path = Field(
        Path(".docvl-cache"), description="window results and finished records (resume)"
    )

    @field_validator("pages")
    @classmethod
    def _pages_syntax(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_pages(value)
        return value.replace(" ", "")

    @field_validator("base_url")
    @classmethod
    def _base_url_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(
                f"wants an http:// or https:// URL such as http://localhost:8000/v1, got {value!r}"
            )
        return value

    def slide_memory_limit_mb(self) -> int:
        """LibreOffice's address-space limit: ``slide_memory_mb``, within ``memory_budget_mb``."""
        if self.memory_budget_mb:
            return min(self.slide_memory_mb, self.memory_budget_mb)
        return self.slide_memory_mb

    def unpacked_cap(self) -> int:
        """Most bytes a deck may unpack to: ``max_unpacked_bytes``, and no more than an eighth of
        the memory budget (a deck with a 1,000 MB part peaked at 2.3 GB: python-pptx and
        LibreOffice hold its parts, and several decks may convert at once)."""
        if self.memory_budget_mb:
            return min(self.max_unpacked_bytes, self.memory_budget_mb * 1024 * 1024 // 8)
        return self.max_unpacked_bytes

    def page_pixel_cap(self) -> int:
        """Most pixels one image may declare: ``max_page_pixels``, and no more than the memory
        budget can decode (:data:`MEMORY_BYTES_PER_PIXEL` bytes per pixel)."""
        if self.memory_budget_mb:
            fits = self.memory_budget_mb * 1024 * 1024 // MEMORY_BYTES_PER_PIXEL
            return min(self.max_page_pixels, fits)
        return self.max_page_pixels

    def page_ranges(self) -> list[tuple[int, int]] | None:
        """The page selection as 1-based inclusive ranges; None: every page."""
        return parse_pages(self.pages) if self.pages else None

    def fingerprint(self) -> str:
        """Hash of everything that changes a result (used for caching); secrets excluded."""
        keep = self.model_dump(
            mode="json",
            exclude={
                "password",
                "render_workers",
                "text_worker",
                "max_concurrency",
                "request_timeout_s",
                "request_deadline_s",
                "cache_dir",
                "api_key_env",
                "max_retries",
                "base_url",
                "device",
                "prefect_server",
                "lock_wait_s",
                "document_timeout_s",
                "memory_budget_mb",
            },
        )
        for name in ("extra_body", "sampling_extras"):  # added later: unset keeps old keys valid
            if not keep[name]:
                del keep[name]
        if keep.get("pages") is None:  # an unset selection keeps the fingerprints of before
            keep.pop("pages", None)
        return hashlib.sha256(repr(sorted(keep.items())).encode()).hexdigest()[:16]
