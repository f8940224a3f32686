"""Heavy imports on the main thread, before the flow's worker threads start.

The transformers backend imports torch, the Qwen3-VL model and processor classes and llguidance
lazily, inside the task that first calls the model. That task runs in a worker thread, and there the
imports (transformers' lazy module machinery under the global import lock) took about 8 s of the
cold-run profile in issue 12, with every other worker blocked on the same lock. Importing them once,
here, is the same work done before anything waits on it; with ``prefect_server="local"`` it overlaps
the server's start-up (:func:`docvl.flows.localserver.local_api_url`).
"""

from __future__ import annotations

import importlib
import logging

from docvl.pipeline.settings import Settings

log = logging.getLogger(__name__)

#: What the transformers backend (pipeline/model/transformers_backend.py, qwen.py, constrain.py)
#: imports on its first call, in dependency order.
TRANSFORMERS_MODULES = (
    "torch",
    "transformers",
    "transformers.models.qwen3_vl.modeling_qwen3_vl",
    "transformers.models.qwen3_vl.processing_qwen3_vl",
    "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl",
    "transformers.generation",
    "llguidance",
    "llguidance.numpy",
    "llguidance.hf",
)


def modules_for(settings: Settings) -> tuple[str, ...]:
    return TRANSFORMERS_MODULES if settings.backend == "transformers" else ()


def preload(settings: Settings) -> list[str]:
    """Import what ``settings.backend`` will need; returns the modules that could not be imported
    (the backend reports those itself, with its own error, when it is built)."""
    missing: list[str] = []
    for name in modules_for(settings):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log.debug("preload: %s not importable (%s)", name, exc)
            missing.append(name)
    return missing
