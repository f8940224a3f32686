"""Reading finished records back: the record-store check the runner makes per unit, and the rerun
fast path of ``docvl run``.

A rerun whose documents are all finished needs no Prefect, torch or transformers: the record keys
come from :mod:`docvl.pipeline.engine.units` (file hashes, settings fingerprint, task specs) and the
records from :class:`~docvl.flows.store.RecordStore`. :func:`finished_batch` answers such a batch
in about the time of importing docvl's settings and result model; any unit without a final record
under the current keys (new settings, model, schema or file content) sends the whole batch to the
normal path, which then computes only the units that lack records.

This module must stay light: no Prefect, no engine stages, no model backends (the CLI imports it
before deciding whether to import those).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from docvl.flows.store import RecordStore
from docvl.pipeline.engine.units import expand, make_units, record_keys
from docvl.pipeline.policy import is_final
from docvl.pipeline.result import ResultEnvelope
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.specs import task_specs


def timeout_key(key: str, budget_s: float) -> str:
    """Where a ``document_timeout`` record is stored: per budget, so a larger budget recomputes."""
    return f"{key}.timeout-{budget_s:g}"


def memory_key(key: str, budget_mb: int) -> str:
    """Where a ``memory_budget`` record is stored: per budget, so a larger budget recomputes."""
    return f"{key}.memory-{budget_mb}"


def stored_envelopes(
    store: RecordStore, keys: Sequence[str | None], settings: Settings
) -> list[ResultEnvelope] | None:
    """The final envelopes stored under ``keys`` (a unit's record keys), or None when one is
    missing, unreadable, of an older envelope version or not final. A ``document_timeout`` or
    ``memory_budget`` record stored under the current time or memory budget counts as final too."""
    budget_s, budget_mb = settings.document_timeout_s, settings.memory_budget_mb
    envelopes = []
    for key in keys:
        record = store.get(key) if key else None
        if record is None and key and budget_s is not None:  # a timeout under this budget
            record = store.get(timeout_key(key, budget_s))
        if record is None and key and budget_mb:  # over this memory budget
            record = store.get(memory_key(key, budget_mb))
        if record is None:
            return None
        try:
            envelope = ResultEnvelope.model_validate(record)
        except ValueError:  # a record of an older envelope version: recompute
            return None
        if not is_final(envelope.errors):
            return None
        envelopes.append(envelope)
    return envelopes


def finished_batch(
    paths: Sequence[str | Path], settings: Settings
) -> tuple[list[ResultEnvelope], int] | None:
    """Every path's envelope from the record store, when every unit of the batch has final
    records for ``settings``; else None (the batch needs the runner).

    Returns the envelopes in input order (a duplicate's copy carries its own path, as the runner's)
    and the number of records read (what the runner reports as cached: one per file of a unit).
    """
    specs = task_specs(settings)
    units, of_path = make_units([Path(p) for p in paths], settings, specs)
    store = RecordStore.for_settings(settings)
    done: list[list[ResultEnvelope]] = []
    for unit in units:
        stored = stored_envelopes(store, record_keys(unit, settings, specs), settings)
        if stored is None:
            return None
        done.append(stored)
    return expand(units, of_path, done, paths), sum(len(envs) for envs in done)
