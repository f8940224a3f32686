"""The one settings object. Built once (CLI, flow or API) and passed down; never a global.

Every field can come from the environment with the ``DOCVL_`` prefix (``DOCVL_DPI=200``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
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
                "request_deadline_s",
                "cache_dir",
                "api_key_env",
                "max_retries",
                "base_url",
                "device",
            },
        )
        for name in ("extra_body", "sampling_extras"):  # added later: unset keeps old keys valid
            if not keep[name]:
                del keep[name]
        return hashlib.sha256(repr(sorted(keep.items())).encode()).hexdigest()[:16]
