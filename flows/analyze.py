"""The Prefect runner: the ``docvl-analyze-batch`` flow and ``run_batch`` (what ``docvl run``
calls). It drives :class:`docvl.pipeline.engine.Engine` and decides nothing about
documents.

Per unit (a document, or the documents of a cross-document question): skip it when final records
exist under the engine's record keys; else ``prepare``, one ``window`` task per window (cached per
window), ``finish``, and an atomic record write of each final envelope (the resume point; failures
are never stored). The JSONL output is rebuilt from the envelopes at the end and replaced
atomically: a torn or duplicated line cannot exist, and a batch killed with SIGKILL recomputes only
its unfinished documents (and, inside them, only unfinished windows).

Concurrency: units run in parallel (driver threads submitting to the flow's ThreadPoolTaskRunner);
model calls go through :class:`docvl.flows.limits.LimitedBackend` (local semaphore + Prefect global
limit). The backend is built lazily once per flow run, so fully cached runs never load a model.
"""

# No `from __future__ import annotations`: Prefect resolves flow parameter types at load time.

import concurrent.futures as cf
import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefect import State, flow, get_run_logger
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    temporary_settings,
)
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from docvl.flows import progress, report
from docvl.flows.backend import LazyBackend, discard_prebuilt, load_factory, localize, take_prebuilt
from docvl.flows.guard import BatchStop, call_with_budget
from docvl.flows.limits import LimitedBackend, ModelLimiter, ensure_global_limit
from docvl.flows.localserver import local_api_url
from docvl.flows.locks import DocumentLocks
from docvl.flows.memory import guard_for
from docvl.flows.options import RunOptions
from docvl.flows.rerun import memory_key, stored_envelopes, timeout_key
from docvl.flows.server import Starting, api_server, flush_run_logs, healthy
from docvl.flows.signals import run_interruptible
from docvl.flows.states import envelopes_of as envelopes_of
from docvl.flows.states import final_state
from docvl.flows.store import RecordStore, atomic_write_jsonl, shown_name
from docvl.flows.tasks import WindowFailed, finish_task, prepare_task, window_task
from docvl.flows.warmup import build_while_booting, preload
from docvl.pipeline.engine import Engine, Unit, WindowResult, expand
from docvl.pipeline.errors import DocumentTimeout, MemoryBudgetExceeded, NotAttempted
from docvl.pipeline.model.qwen import load_tokenizer
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.policy import is_final
from docvl.pipeline.result import ResultEnvelope
from docvl.pipeline.settings import Settings


def run_label(unit: Unit, limit: int = 60) -> str:
    """Task-run names say which document they work on (several for a shared question)."""
    names = ", ".join(shown_name(p) for p in unit.paths)
    return names if len(names) <= limit else names[: limit - 1] + "…"


def _named(name: str) -> Callable[[], str]:
    """A task-run name as a callable: Prefect would ``str.format`` a string (a file name may hold
    braces)."""
    return lambda: name


def thread_runner(workers: int) -> Any:
    return ThreadPoolTaskRunner(max_workers=workers)


def storage_for(settings: Settings, result_storage: str | None) -> Any:
    """A Path (default ``cache_dir/prefect-results``) or, with ``block:SLUG``, a block slug."""
    if result_storage and result_storage.startswith("block:"):
        return result_storage.removeprefix("block:")
    return Path(result_storage or Path(settings.cache_dir) / "prefect-results").resolve()


def _q(value: object) -> Any:
    """Pass ``value`` to a task as is: never hashed, copied or resolved by Prefect."""
    return quote(value)


class Runner:
    """Drives the engine's stages as Prefect tasks, inside the current flow run."""

    def __init__(self, settings: Settings, options: RunOptions) -> None:
        settings = localize(settings)
        self.options = options
        self.limiter = ModelLimiter(settings.max_concurrency, options.global_limit)
        spec = options.backend_factory
        self.lazy = LazyBackend(settings, load_factory(spec), take_prebuilt(settings, spec))
        self.backend = LimitedBackend(self.lazy, self.limiter)
        counter = TokenCounter(load_tokenizer(settings.model))
        self.engine = Engine(settings, self.backend, counter)  # UsageError for a bad task setup
        if options.global_limit:
            ensure_global_limit(options.global_limit, settings.max_concurrency)
        self.store = RecordStore.for_settings(settings)
        self.failures = 0  # failed documents so far (``options.max_failures``)
        self._failures_lock = threading.Lock()
        self.locks = DocumentLocks(Path(settings.cache_dir) / "locks", wait_s=settings.lock_wait_s)
        self.stop = BatchStop()
        self.memory = guard_for(settings.memory_budget_mb, self.lazy)  # the run's memory budget
        delays = [options.retry_delay_s * 2**i for i in range(max(options.retries, 1))]
        self.window = window_task.with_options(
            result_storage=storage_for(settings, options.result_storage),
            retries=options.retries,
            retry_delay_seconds=delays,
        )

    def _stored(self, keys: list[str | None]) -> list[ResultEnvelope] | None:
        return stored_envelopes(self.store, keys, self.engine.settings)

    def _compute(self, unit: Unit) -> list[ResultEnvelope]:
        engine = self.engine
        doc = run_label(unit)
        prepare = prepare_task.with_options(task_run_name=_named(f"prepare {doc}"))
        prepared = prepare.submit(_q(engine), _q(unit)).result()
        try:
            if (skip := self.stop.skip()) is not None:  # the batch stopped while this loaded
                raise skip
            jobs = prepared.jobs
            futures = [
                self.window.with_options(
                    task_run_name=_named(f"window {k}/{len(jobs)} {doc}")
                ).submit(_q(engine), _q(prepared), job, engine.window_key(unit, job))
                for k, job in enumerate(jobs, 1)
            ]
            results: list[WindowResult] = []
            for future in futures:
                try:
                    results.append(future.result())
                except WindowFailed as exc:  # retries exhausted: keep the failure, never cache it
                    results.append(exc.result)
            finish = finish_task.with_options(task_run_name=_named(f"finish {doc}"))
            envelopes: list[ResultEnvelope] = finish.submit(
                _q(engine), _q(prepared), _q(results)
            ).result()
            return envelopes
        finally:
            prepared.close()

    def _emit(self, envelopes: list[ResultEnvelope], cached: bool) -> None:
        for env in envelopes:
            progress.emit(
                "document",
                path=env.source.path,
                status=env.status,
                cached=cached,
                pages=env.source.pages if cached else 0,
                windows=len(env.plan.windows) if cached else 0,
            )

    def drive(self, unit: Unit) -> tuple[list[ResultEnvelope], bool]:
        """One unit, start to records. Returns (envelopes, came_from_record_store).

        Never raises: any exception becomes the unit's record (a typed code, else
        ``internal_error``), so the batch goes on and its output stays complete.
        """
        started = time.perf_counter()
        try:
            return self._drive(unit, started)
        except Exception as exc:  # a bug must not sink the batch; the record is never final
            envelopes = self.engine.failed(unit, exc, started)
            self._emit(envelopes, cached=False)
            return envelopes, False

    def _drive(self, unit: Unit, started: float) -> tuple[list[ResultEnvelope], bool]:
        keys = self.engine.record_keys(unit)
        if (stored := self._stored(keys)) is not None:
            self._emit(stored, cached=True)
            return stored, True
        if (skip := self.stop.skip()) is not None:
            envelopes = self.engine.failed(unit, skip, started)
            self._emit(envelopes, cached=False)
            return envelopes, False
        limit = self.options.max_failures
        if limit is not None and self.failures >= limit:  # never started, never cached
            skipped = NotAttempted(f"not attempted: the batch reached --max-failures {limit}")
            envelopes = self.engine.failed(unit, skipped, started)
            self._emit(envelopes, cached=False)
            return envelopes, False
        with self.locks.hold(keys[0], lambda: self._stored(keys) is not None):
            if (stored := self._stored(keys)) is not None:  # another process finished it
                self._emit(stored, cached=True)
                return stored, True
            budget = self.engine.settings.document_timeout_s
            for path in unit.paths:
                progress.emit("started", path=str(path))
            try:
                work = lambda: self.memory.run(run_label(unit), lambda: self._compute(unit))  # noqa: E731
                envelopes = call_with_budget(work, budget)
            except Exception as exc:  # a bug must not sink the batch; the record is never final
                envelopes = self.engine.failed(unit, exc, started)
            self.stop.note(envelopes)
            with self._failures_lock:
                self.failures += sum(env.status == "failed" for env in envelopes)
            for key, env in zip(keys, envelopes, strict=True):
                if key and is_final(env.errors):  # never cache a failure
                    timed_out = any(e.code == DocumentTimeout.code for e in env.errors)
                    if timed_out and budget is not None:
                        key = timeout_key(key, budget)
                    elif any(e.code == MemoryBudgetExceeded.code for e in env.errors):
                        key = memory_key(key, self.memory.budget_mb)
                    self.store.put(key, env.model_dump(mode="json"))
        self._emit(envelopes, cached=False)
        return envelopes, False

    def run(self, paths: Sequence[str | Path]) -> tuple[list[ResultEnvelope], set[int]]:
        """Every document; envelopes in input order and the indices that came from records."""
        units, of_path = self.engine.units(paths)
        workers = max(2, min(len(units), self.engine.settings.max_concurrency))
        try:
            with (
                self.memory,
                cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docvl-doc") as pool,
            ):
                futures = [
                    pool.submit(contextvars.copy_context().run, self.drive, u) for u in units
                ]
                done = [f.result() for f in futures]
        finally:
            self.lazy.close()
        envelopes = expand(units, of_path, [envs for envs, _ in done], paths)
        cached: set[int] = set()  # from records, or a copy of an earlier path's envelope
        seen: set[tuple[int, Path]] = set()
        for i, (path, u) in enumerate(zip(map(Path, paths), of_path, strict=True)):
            if done[u][1] or (u, path) in seen or path not in units[u].paths:
                cached.add(i)
            seen.add((u, path))
        get_run_logger().info(
            "docvl: %d documents, %d from records, %d model calls, peak concurrency %d",
            len(paths),
            len(cached),
            self.backend.calls,
            self.limiter.peak,
        )
        return envelopes, cached


def process_documents(
    paths: Sequence[str | Path], settings: Settings, options: RunOptions | None = None
) -> tuple[list[ResultEnvelope], set[int]]:
    """Run every document inside the current flow run (envelopes in order, cached indices)."""
    return Runner(settings, options or RunOptions()).run(paths)


@flow(name="docvl-analyze-batch", task_runner=thread_runner(16), log_prints=False)
def analyze_batch(
    paths: list[str], settings: Settings, out: str | None = None, options: RunOptions | None = None
) -> State[Any]:
    """Every document of ``paths``; the run ends Failed when one failed (see :func:`final_state`).
    Call it with ``return_state=True`` and read the records with :func:`envelopes_of`."""
    options = options or RunOptions()
    envelopes, cached = process_documents(paths, settings, options)
    if out:
        atomic_write_jsonl(Path(out), (e.model_dump(mode="json") for e in envelopes))
    if options.artifacts:
        report.publish(envelopes, cached, title=f"docvl batch: {len(envelopes)} documents")
    return final_state(envelopes, options, "docvl batch")


def run_batch(
    paths: Sequence[str | Path],
    settings: Settings,
    out: Path | None,
    show_progress: bool = False,
    options: RunOptions | None = None,
    *,
    exit_on_signal: bool = False,
    server: Starting | None = None,
) -> list[ResultEnvelope]:
    """``docvl run``: the batch flow in this process.

    With no ``PREFECT_API_URL``, ``settings.prefect_server="local"`` reuses one background server
    across runs (:mod:`docvl.flows.localserver`); otherwise a local Prefect server is started for
    the batch in its own process group and stopped after it (:func:`docvl.flows.server.api_server`).
    SIGINT/SIGTERM stop the batch within seconds and stop every child process
    (:func:`docvl.flows.signals.run_interruptible`); with ``exit_on_signal`` (the CLI) the process
    then exits 130/143 at once, else :class:`docvl.flows.signals.Interrupted` is raised.

    Model calls are bounded by ``settings.max_concurrency`` in process; ``options.global_limit``
    adds the Prefect global concurrency limit shared by every process on the server (opt-in: it
    costs about 1 s per call on SQLite, see bench/RESULTS-flows.md).

    ``server``: a per-batch server the caller started early
    (:func:`docvl.flows.server.start_server`, so it boots during the imports); used when no URL is
    configured, stopped after the batch either way.
    """
    batch = analyze_batch.with_options(task_runner=thread_runner(2 * settings.max_concurrency + 4))

    def work() -> list[ResultEnvelope]:
        state = batch(
            [str(p) for p in paths], settings, str(out) if out else None, options, return_state=True
        )
        return envelopes_of(state)

    # Heavy imports on this thread (overlapping a reused local server's start-up), not in workers.
    api = local_api_url(settings, while_starting=lambda: preload(settings))
    preload(settings)  # imported already when a server was just started
    updates: dict[Any, Any] = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    if api is not None:
        updates[PREFECT_API_URL] = api
    try:
        if server is not None and not healthy(server.url, timeout=0.5):
            build_while_booting(settings, options or RunOptions())
        with (
            temporary_settings(updates=updates),
            # the configured or reused one, else the early one or one for now
            api_server(announce=False, batch=True, starting=server),
            progress.progress_bar(len(paths), enabled=show_progress),
        ):
            try:
                return run_interruptible(work, hard_exit=exit_on_signal)
            finally:
                flush_run_logs()
    finally:
        discard_prebuilt()  # a model no flow run took (the batch stopped before)
