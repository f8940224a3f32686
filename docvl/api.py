"""The Python API: the same work as ``docvl plan`` and ``docvl run``, without the CLI.

>>> from docvl.api import plan, run, analyze
>>> from pipeline.settings import Settings
>>> settings = Settings(tasks=("extract",), schema_name="invoice",
...                     model="/models/Qwen3-VL-8B-Instruct")
>>> plan(["invoice.pdf"], settings).documents[0].windows          # doctest: +SKIP
>>> [r.extraction for r in run(["invoice.pdf"], settings)]        # doctest: +SKIP

``run`` goes through the Prefect runner (caching, resume, concurrency limits); ``analyze``
drives the engine in this thread with a backend you built, for notebooks and tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flows.analyze import run_batch
from flows.options import RunOptions
from pipeline.engine import Engine
from pipeline.engine.prepare import plan_documents
from pipeline.model.base import ModelBackend
from pipeline.model.factory import make_backend
from pipeline.model.qwen import load_tokenizer
from pipeline.plan.count import TokenCounter
from pipeline.plan.planner import Plan
from pipeline.result import ResultEnvelope
from pipeline.settings import Settings
from pipeline.tasks.specs import task_specs

__all__ = [
    "Plan",
    "ResultEnvelope",
    "RunOptions",
    "Settings",
    "analyze",
    "counter_for",
    "plan",
    "run",
]


def counter_for(settings: Settings) -> TokenCounter:
    """Exact counts when the model's tokenizer is on disk, the documented estimate otherwise."""
    return TokenCounter(load_tokenizer(settings.model))


def plan(paths: Sequence[str | Path], settings: Settings | None = None) -> Plan:
    """The plan the engine runs for every document: pages, token counts, windows (with their
    tasks, input and expected output tokens) and cost. No model call.

    A file that cannot be loaded is a failed entry of the plan, never an exception. Raises
    ``UsageError``/``SchemaNotFound`` for a bad task configuration.
    """
    settings = settings or Settings()
    specs = task_specs(settings)
    return plan_documents([Path(p) for p in paths], settings, counter_for(settings), specs)


def run(
    paths: Sequence[str | Path],
    settings: Settings | None = None,
    out: Path | None = None,
    options: RunOptions | None = None,
) -> list[ResultEnvelope]:
    """Analyse the documents through the Prefect flow: one envelope per path, in order.

    Finished documents and windows are cached under ``settings.cache_dir``, so a rerun resumes.
    With ``out``, the envelopes are also written there as JSONL (atomically).
    """
    return run_batch([Path(p) for p in paths], settings or Settings(), out, options=options)


def analyze(
    paths: Sequence[str | Path],
    settings: Settings | None = None,
    backend: ModelBackend | None = None,
) -> list[ResultEnvelope]:
    """Analyse the documents in this thread with ``backend`` (default: built from the settings and
    closed afterwards). One envelope per path, in order; no Prefect, no caching, no retries."""
    settings = settings or Settings()
    own = backend is None
    model = backend or make_backend(settings)
    try:
        return Engine(settings, model, counter_for(settings)).analyze(paths)
    finally:
        if own:
            model.close()
