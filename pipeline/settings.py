"""The one settings object. Built once (CLI, flow or API) and passed down; never a global.

Every field can come from the environment with the ``DOCVL_`` prefix (``DOCVL_DPI=200``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Qwen3-VL: one image token per 32x32 pixel block (patch 16 x spatial merge 2).
PIXELS_PER_TOKEN = 32 * 32
DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"

TaskName = Literal["summary", "ask", "extract"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCVL_", extra="forbid", frozen=True)

    # --- rendering -----------------------------------------------------------------------------
    renderer: Literal["pymupdf", "pdf2image"] = "pymupdf"
    dpi: int = Field(150, ge=36, le=600)
    #: Per-page pixel budget. Pages are scaled to fit [min_pixels, max_pixels] (the processor's
    #: rule).
    min_pixels: int = Field(64 * PIXELS_PER_TOKEN, ge=PIXELS_PER_TOKEN)
    max_pixels: int = Field(1280 * PIXELS_PER_TOKEN, ge=PIXELS_PER_TOKEN)
    render_workers: int = Field(2, ge=1, le=64)
    #: LibreOffice converts about one slide per second on a 2-core machine (a 48-slide deck: 56 s).
    slide_timeout_s: float = Field(300.0, gt=0)
    password: str | None = Field(None, repr=False, exclude=True)

    # --- prompt / plan -------------------------------------------------------------------------
    context_window: int = Field(262_144, gt=0)
    #: The output budget of one reply, reserved in every window. Extraction into record lists
    #: plans page segments whose expected reply fits it (Qwen3-VL-8B generates up to 32,768).
    max_output_tokens: int = Field(16_384, gt=0)
    include_text: bool = True
    #: Cap on the characters of a page's text layer put into the prompt.
    max_text_chars_per_page: int = Field(12_000, ge=0)
    max_images_per_request: int = Field(512, ge=1)
    #: Several documents in one window (questions across documents).
    share_windows: bool = False
    price_input_per_mtok: float = Field(0.08, ge=0)
    price_output_per_mtok: float = Field(0.50, ge=0)

    # --- task ----------------------------------------------------------------------------------
    #: Several tasks on one document share one prefill of its pages.
    tasks: tuple[TaskName, ...] = ("summary",)
    schema_name: str | None = None
    question: str | None = None

    # --- model / backend -----------------------------------------------------------------------
    backend: Literal["transformers", "openai", "scripted"] = "transformers"
    model: str = DEFAULT_MODEL
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    request_timeout_s: float = Field(600.0, gt=0)
    max_retries: int = Field(4, ge=0)
    max_concurrency: int = Field(4, ge=1)
    max_attempts: int = Field(3, ge=1)
    temperature: float = Field(0.0, ge=0)
    device: str | None = None
    #: Decode against the bounded schema (``schemas.decoder_schema``: every list, string and
    #: number capped) and derive each reply's token budget from those caps. ONLY for random-weight
    #: models and tests (the tiny model, ``make smoke``: ``DOCVL_DECODER_BOUNDS=1``), which need the
    #: caps to terminate; a real model would silently lose rows past the caps. Off (the default):
    #: the user's schema as written, unbounded, with ``max_output_tokens`` as the budget.
    decoder_bounds: bool = False

    # --- runtime budgets (flows) ---------------------------------------------------------------
    document_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Wall-time budget of one document in a flow run (seconds); a document over it "
        "is recorded as failed with document_timeout and the batch goes on. None: no limit.",
    )
    lock_wait_s: float = Field(
        3600.0,
        ge=0,
        description="How long a run waits for a document another live docvl process is computing "
        "(its per-document lock) before computing it itself.",
    )

    # --- output --------------------------------------------------------------------------------
    cache_dir: Path = Path(".docvl-cache")

    def fingerprint(self) -> str:
        """Hash of everything that changes a result (used for caching); secrets excluded."""
        keep = self.model_dump(
            mode="json",
            exclude={
                "password",
                "render_workers",
                "max_concurrency",
                "request_timeout_s",
                "cache_dir",
                "api_key_env",
                "max_retries",
                "base_url",
                "device",
                "lock_wait_s",
                "document_timeout_s",
            },
        )
        return hashlib.sha256(repr(sorted(keep.items())).encode()).hexdigest()[:16]
