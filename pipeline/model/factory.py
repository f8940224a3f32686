"""``make_backend(settings)``: the one place that picks and builds a model backend."""

from __future__ import annotations

from typing import Any

from docvl.pipeline.errors import UsageError
from docvl.pipeline.model.base import ModelBackend
from docvl.pipeline.model.openai_backend import OpenAIBackend
from docvl.pipeline.model.scripted import ScriptedBackend
from docvl.pipeline.model.transformers_backend import TransformersBackend
from docvl.pipeline.settings import Settings


def make_backend(settings: Settings, **options: Any) -> ModelBackend:
    """Build the backend ``settings.backend`` names.

    * ``transformers``: Qwen3-VL in process from ``settings.model`` (local dir or cached hub id) on
      ``settings.device``; raises BackendUnavailable (with download instructions) when the weights
      are missing.
    * ``openai``: an OpenAI-compatible server at ``settings.base_url`` (required: UsageError without
      it). ``options`` go to :class:`OpenAIBackend` (``image_format``).
    * ``scripted``: canned replies for tests and dry runs; ``options`` go to
      :class:`ScriptedBackend` (``replies``, ``tokenizer``); without replies every answer is ``{}``.
    """
    if settings.backend == "transformers":
        return TransformersBackend(settings.model, device=settings.device, **options)
    if settings.backend == "openai":
        check_settings(settings)
        return OpenAIBackend(settings, **options)
    if settings.backend == "scripted":
        options.setdefault("model_id", settings.model)
        return ScriptedBackend(**options)
    raise UsageError(f"unknown backend {settings.backend!r}")


def check_settings(settings: Settings) -> None:
    """Fail early (before any document is touched) on backend settings that can never work."""
    if settings.backend == "openai" and not settings.base_url:
        raise UsageError(
            "--backend openai needs --base-url (e.g. http://localhost:8000/v1 for vLLM, "
            "https://openrouter.ai/api/v1 for OpenRouter); nothing is sent anywhere without it"
        )
