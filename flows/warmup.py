"""Heavy imports on the main thread, before the flow's worker threads start.

The transformers backend imports torch, the Qwen3-VL model and processor classes and llguidance
lazily, inside the task that first calls the model. That task runs in a worker thread, and there the
imports (transformers' lazy module machinery under the global import lock) took about 8 s of the
cold-run profile in issue 12, with every other worker blocked on the same lock. Importing them once,
here, is the same work done before anything waits on it; with ``prefect_server="local"`` it overlaps
the server's start-up (:func:`docvl.flows.localserver.local_api_url`), and so does the per-batch
server that ``docvl run`` starts before its imports, during which :func:`build_while_booting` also
loads the model.
"""

from __future__ import annotations

import importlib
import logging

from docvl.flows.backend import localize, prebuild
from docvl.flows.options import RunOptions
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


def build_while_booting(settings: Settings, options: RunOptions) -> None:
    """Build the backend (load the model) while ``docvl run``'s early Prefect server is still
    booting; the flow run takes it (:func:`docvl.flows.backend.take_prebuilt`). A backend that
    cannot be built now is built, and its failure reported, by the flow as usual."""
    try:
        prebuild(localize(settings), options.backend_factory)
    except Exception as exc:
        log.debug("building the backend ahead failed (%s); the flow builds it", exc)
