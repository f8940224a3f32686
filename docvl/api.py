"""The Python API: the same work as ``docvl plan`` and ``docvl run``, without the CLI.

>>> from docvl.api import plan, run, analyze
>>> from docvl.pipeline.settings import Settings
>>> from docvl.schemas import Invoice
>>> settings = Settings(tasks=("extract",), schema_name="invoice",
...                     model="/models/Qwen3-VL-8B-Instruct")
>>> plan(["invoice.pdf"], settings).documents[0].windows          # doctest: +SKIP
>>> [r.extraction_as(Invoice).total for r in run(["invoice.pdf"], settings)]  # doctest: +SKIP

``run`` goes through the Prefect runner (caching, resume, concurrency limits); ``analyze``
drives the engine in this thread with a backend you built, for notebooks and tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from docvl.flows.analyze import run_batch
from docvl.flows.options import RunOptions
from docvl.pipeline.engine import Engine
from docvl.pipeline.engine.prepare import plan_documents
from docvl.pipeline.model.base import ModelBackend
from docvl.pipeline.model.factory import make_backend
from docvl.pipeline.model.qwen import load_tokenizer
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.planner import Plan
from docvl.pipeline.result import ResultEnvelope
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.specs import task_specs

__all__ = [
    "Plan",
    "ResultEnvelope",
    "RunOptions",
    "Settings",
    "analyze",
    "counter_for",
    "extraction_as",
    "plan",
    "run",
]

M = TypeVar("M", bound=BaseModel)


def counter_for(settings: Settings) -> TokenCounter:
    """The token counter for ``settings.model``: exact counts when the model's tokenizer is on
    disk, the documented estimate otherwise (``Plan.exact_tokens`` says which)."""
    return TokenCounter(load_tokenizer(settings.model))


def plan(paths: Sequence[str | Path], settings: Settings | None = None) -> Plan:
    """The plan the engine runs for every document: pages, token counts, windows (with their
    tasks, input and expected output tokens) and cost. No model call.

    Args:
        paths: documents (PDF, PPTX, PPT, images), analysed in order.
        settings: what to plan for (tasks, model, page budget, ``pages``); default ``Settings()``,
            which reads ``DOCVL_*`` variables.

    Returns:
        One :class:`~docvl.pipeline.plan.planner.DocumentPlan` per path, in order. A file that
        cannot be loaded is a failed entry with its typed error, never an exception.

    Raises:
        UsageError: a bad task configuration (``ask`` without a question, for example).
        SchemaNotFound: ``schema_name`` names no schema.
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
    """Analyse the documents through the Prefect flow (an ephemeral server unless
    ``PREFECT_API_URL`` is set).

    Finished documents and windows are cached under ``settings.cache_dir``, so a rerun resumes.

    Args:
        paths: documents, analysed in order (same content twice is analysed once).
        settings: what to compute; default ``Settings()`` (``DOCVL_*`` variables apply).
        out: also write the envelopes there as JSONL, replaced atomically.
        options: how the runner runs (retries, a global concurrency limit, ``max_failures``).

    Returns:
        One envelope per path, in order. A document that failed has ``status == "failed"`` and
        its typed errors; nothing in the batch is lost to another document's failure.
    """
    return run_batch([Path(p) for p in paths], settings or Settings(), out, options=options)


def analyze(
    paths: Sequence[str | Path],
    settings: Settings | None = None,
    backend: ModelBackend | None = None,
) -> list[ResultEnvelope]:
    """Analyse the documents in this thread: no Prefect, no caching, no retries.

    Args:
        paths: documents, analysed in order.
        settings: what to compute; default ``Settings()``.
        backend: the model to call; default one built from ``settings`` and closed afterwards (a
            backend passed in stays open: reuse it across calls).

    Returns:
        One envelope per path, in order.
    """
    settings = settings or Settings()
    own = backend is None
    model = backend or make_backend(settings)
    try:
        return Engine(settings, model, counter_for(settings)).analyze(paths)
    finally:
        if own:
            model.close()


def extraction_as(record: ResultEnvelope, model: type[M]) -> M:
    """``record``'s extraction as an instance of the user's pydantic class ``model``; the same as
    ``record.extraction_as(model)``.

    Raises:
        LookupError: the record holds no extraction (its ``errors`` say why).
        pydantic.ValidationError: the data does not fit ``model``.
    """
    return record.extraction_as(model)
