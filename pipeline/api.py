"""The Python API: the same work as ``docvl plan`` and ``docvl run``, without the CLI.

>>> from pipeline.api import plan, run
>>> from pipeline.settings import Settings
>>> settings = Settings(tasks=("extract",), schema_name="invoice", model="/models/Qwen3-VL-8B-Instruct")
>>> plan(["invoice.pdf"], settings).documents[0].windows          # doctest: +SKIP
>>> [r.extraction for r in run(["invoice.pdf"], settings)]        # doctest: +SKIP

``run`` goes through the Prefect flow (caching, resume, concurrency limits); ``analyze`` calls the
pipeline directly with a backend you built, for notebooks and tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.backends.base import ModelBackend
from pipeline.count import TokenCounter
from pipeline.plan import Plan, plan_paths
from pipeline.result import ResultEnvelope
from pipeline.settings import Settings


def counter_for(settings: Settings) -> TokenCounter:
    """Exact counts when the model's tokenizer is on disk, the documented estimate otherwise."""
    from pipeline.qwen import load_tokenizer

    return TokenCounter(load_tokenizer(settings.model))


def plan(paths: Sequence[str | Path], settings: Settings | None = None) -> Plan:
    from pipeline.tasks import task_specs

    settings = settings or Settings()
    instructions = [spec.instruction for spec in task_specs(settings)]
    return plan_paths([Path(p) for p in paths], settings, counter_for(settings), instructions)


def run(
    paths: Sequence[str | Path], settings: Settings | None = None, out: Path | None = None
) -> list[ResultEnvelope]:
    from flows.analyze import run_batch

    return run_batch([Path(p) for p in paths], settings or Settings(), out, progress=False)


def analyze(
    paths: Sequence[str | Path], settings: Settings | None = None, backend: ModelBackend | None = None
) -> list[ResultEnvelope]:
    from pipeline.analyze import analyze_many
    from pipeline.backends.factory import make_backend

    settings = settings or Settings()
    own = backend is None
    backend = backend or make_backend(settings)
    try:
        return list(analyze_many([Path(p) for p in paths], settings, backend, counter_for(settings)))
    finally:
        if own:
            backend.close()
