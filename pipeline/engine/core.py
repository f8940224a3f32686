"""The one analysis engine: units → prepare → windows → finish. Every runner drives it.

* The in-process runner is :meth:`Engine.analyze` (the Python API's ``analyze`` and tests).
* The Prefect runner (:mod:`flows`) wraps the same stages in tasks and adds retries, caching,
  concurrency limits, artifacts and delivery; it decides nothing about documents.

A bad file never raises out of the engine: it becomes its envelope's error record, and the batch
goes on. An unexpected exception in a stage is a bug: its unit's records say ``internal_error``,
which is never final (:data:`docvl.pipeline.policy.FAILURE_POLICY`), so a rerun tries again.

Usage invariant: with an exact :class:`~docvl.pipeline.plan.count.TokenCounter` and a backend that
reports prompt tokens the same way, ``envelope.usage.input_tokens == envelope.plan.input_tokens``
whenever every first attempt validates and no reduce or completeness call is made. Re-asks, reduce
and completeness calls add to usage on top of the plan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from docvl.pipeline.engine.finish import build_envelopes, failed_envelopes, model_info
from docvl.pipeline.engine.identity import cache_key
from docvl.pipeline.engine.prepare import Prepared, prepare
from docvl.pipeline.engine.units import Unit, make_units, record_keys
from docvl.pipeline.engine.units import expand as expand
from docvl.pipeline.engine.windows import WindowResult, run_window
from docvl.pipeline.errors import DocvlError, ErrorRecord, InternalError
from docvl.pipeline.model.base import ModelBackend
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.result import ModelInfo, ResultEnvelope
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.specs import task_specs

log = logging.getLogger(__name__)


class Engine:
    """The analysis chain for one settings object, one backend and one token counter.

    Building it checks the task configuration (``UsageError``/``SchemaNotFound`` before any slow
    work). The backend is only called from :meth:`run_window` and :meth:`finish`.
    """

    def __init__(self, settings: Settings, backend: ModelBackend, counter: TokenCounter) -> None:
        self.settings, self.backend, self.counter = settings, backend, counter
        self.specs = task_specs(settings)

    @property
    def model(self) -> ModelInfo:
        return model_info(self.backend, self.settings)

    # --- the stages ------------------------------------------------------------------------------

    def units(self, paths: Sequence[str | Path]) -> tuple[list[Unit], list[int]]:
        """The units of a batch and, for each path, the index of its unit (same content: once)."""
        return make_units([Path(p) for p in paths], self.settings, self.specs)

    def prepare(self, unit: Unit) -> Prepared:
        """Load and plan a unit (bad input becomes error records). Call ``close()`` when done."""
        return prepare(unit, self.settings, self.counter, self.specs)

    def run_window(self, prepared: Prepared, job: tuple[int, int]) -> WindowResult:
        """Render and run one (pass, window) of ``prepared.jobs``. Never raises."""
        return run_window(prepared, job[0], job[1], self.backend, self.settings)

    def finish(self, prepared: Prepared, results: Sequence[WindowResult]) -> list[ResultEnvelope]:
        """Reduce, check completeness, ground: one envelope per file of the unit."""
        return build_envelopes(prepared, results, self.backend, self.settings)

    def failed(
        self, unit: Unit, exc: BaseException, started: float | None = None
    ) -> list[ResultEnvelope]:
        """Envelopes for a unit whose analysis raised: a DocvlError's record, else
        ``internal_error``."""
        record = exc.record() if isinstance(exc, DocvlError) else _internal(unit, exc)
        total = time.perf_counter() - started if started is not None else 0.0
        return failed_envelopes(unit, [record], self.model, total)

    # --- cache identity ---------------------------------------------------------------------------

    def record_keys(self, unit: Unit) -> list[str | None]:
        """Per file of the unit, the key of its record (None: unreadable, never stored)."""
        return record_keys(unit, self.settings, self.specs)

    def window_key(self, unit: Unit, job: tuple[int, int]) -> str:
        return cache_key("window", unit.shas, self.settings, self.specs, *job)

    # --- the in-process runner ----------------------------------------------------------------

    def analyze_unit(self, unit: Unit) -> list[ResultEnvelope]:
        """Every stage for one unit, in this thread."""
        started = time.perf_counter()
        try:
            prepared = self.prepare(unit)
        except Exception as exc:
            return self.failed(unit, exc, started)
        try:
            results = [self.run_window(prepared, job) for job in prepared.jobs]
            return self.finish(prepared, results)
        except Exception as exc:
            return self.failed(unit, exc, started)
        finally:
            prepared.close()

    def analyze(self, paths: Sequence[str | Path]) -> list[ResultEnvelope]:
        """One envelope per path, in order (the in-process runner: no caching, no retries)."""
        units, of_path = self.units(paths)
        done = [self.analyze_unit(unit) for unit in units]
        return expand(units, of_path, done, paths)


def _internal(unit: Unit, exc: BaseException) -> ErrorRecord:
    log.error("internal error on %s", ", ".join(map(str, unit.paths)), exc_info=exc)
    return InternalError(f"{type(exc).__name__}: {exc}").record()
