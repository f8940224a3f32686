"""The Prefect runner: ``docvl-analyze-batch`` / ``docvl-analyze-document`` flows and ``run_batch``
(what ``docvl run`` calls). It drives :class:`pipeline.engine.Engine` and decides nothing about
documents.

Per unit (a document, or the documents of a cross-document question): skip it when final records
exist under the engine's record keys; else ``prepare``, one ``window`` task per window (cached per
window), ``finish``, and an atomic record write of each final envelope (the resume point; failures
are never stored). The JSONL output is rebuilt from the envelopes at the end and replaced
atomically: a torn or duplicated line cannot exist, and a batch killed with SIGKILL recomputes only
its unfinished documents (and, inside them, only unfinished windows).

Concurrency: units run in parallel (driver threads submitting to the flow's ThreadPoolTaskRunner);
model calls go through :class:`flows.limits.LimitedBackend` (local semaphore + Prefect global
limit). The backend is built lazily once per flow run, so fully cached runs never load a model.
"""

# No `from __future__ import annotations`: Prefect resolves flow parameter types at load time.

import concurrent.futures as cf
import contextvars
import importlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import deployment
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    temporary_settings,
)
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from flows import progress, report
from flows.limits import LimitedBackend, ModelLimiter, ensure_global_limit
from flows.localserver import local_api_url
from flows.options import RunOptions
from flows.store import RecordStore, atomic_write_jsonl
from flows.tasks import WindowFailed, finish_task, prepare_task, window_task
from flows.warmup import preload
from pipeline.engine import Engine, Unit, WindowResult, expand
from pipeline.errors import NotAttempted, is_final
from pipeline.model.base import Generation, GenerationRequest, ModelBackend
from pipeline.model.factory import make_backend
from pipeline.model.qwen import load_tokenizer
from pipeline.plan.count import TokenCounter
from pipeline.plan.prompt import Part
from pipeline.result import ResultEnvelope
from pipeline.settings import Settings

BackendFactory = Callable[[Settings], ModelBackend]


def load_factory(spec: str | None) -> BackendFactory:
    if not spec:
        return make_backend
    module, _, name = spec.partition(":")
    factory: BackendFactory = getattr(importlib.import_module(module), name)
    return factory


class LazyBackend:
    """Builds the real backend on the first call, once, thread-safely; closes it only if built."""

    def __init__(self, settings: Settings, factory: BackendFactory) -> None:
        self.name: str = settings.backend
        self.model_id: str = settings.model
        self._settings, self._factory = settings, factory
        self._inner: ModelBackend | None = None
        self._lock = threading.Lock()

    def get(self) -> ModelBackend:
        with self._lock:
            if self._inner is None:
                self._inner = self._factory(self._settings)
            return self._inner

    def generate(
        self, content: Sequence[Part], requests: Sequence[GenerationRequest]
    ) -> list[Generation]:
        return self.get().generate(content, requests)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()


#: Settings that belong to the machine running a flow, not to the result: a deployed or served run
#: takes them from its own DOCVL_* environment (per-worker vLLM URL, device, password, slots,
#: cache).
WORKER_LOCAL = (
    "base_url",
    "device",
    "max_concurrency",
    "request_timeout_s",
    "password",
    "api_key_env",
    "render_workers",
    "cache_dir",
)


def localize(settings: Settings) -> Settings:
    """In deployed/served runs, override :data:`WORKER_LOCAL` fields set in this process's env.

    Deployment parameters are validated without reading the environment, and the password is never
    stored in them. Runs started in-process (``docvl run``) are left alone: the CLI merged the env.
    """
    names = [f for f in WORKER_LOCAL if f"DOCVL_{f.upper()}" in os.environ]
    if not names or deployment.id is None:
        return settings
    fresh = Settings(**{})
    return settings.model_copy(update={f: getattr(fresh, f) for f in names})


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
        self.lazy = LazyBackend(settings, load_factory(options.backend_factory))
        self.backend = LimitedBackend(self.lazy, self.limiter)
        counter = TokenCounter(load_tokenizer(settings.model))
        self.engine = Engine(settings, self.backend, counter)  # UsageError for a bad task setup
        if options.global_limit:
            ensure_global_limit(options.global_limit, settings.max_concurrency)
        self.store = RecordStore.for_settings(settings)
        self.failures = 0  # failed documents so far (``options.max_failures``)
        self._failures_lock = threading.Lock()
        delays = [options.retry_delay_s * 2**i for i in range(max(options.retries, 1))]
        self.window = window_task.with_options(
            result_storage=storage_for(settings, options.result_storage),
            retries=options.retries,
            retry_delay_seconds=delays,
        )

    def _stored(self, unit: Unit, keys: list[str | None]) -> list[ResultEnvelope] | None:
        envelopes = []
        for key in keys:
            record = self.store.get(key) if key else None
            if record is None:
                return None
            envelope = ResultEnvelope.model_validate(record)
            if not is_final(envelope.errors):
                return None
            envelopes.append(envelope)
        return envelopes

    def _compute(self, unit: Unit) -> list[ResultEnvelope]:
        engine = self.engine
        prepared = prepare_task.submit(_q(engine), _q(unit)).result()
        try:
            futures = [
                self.window.submit(_q(engine), _q(prepared), job, engine.window_key(unit, job))
                for job in prepared.jobs
            ]
            results: list[WindowResult] = []
            for future in futures:
                try:
                    results.append(future.result())
                except WindowFailed as exc:  # retries exhausted: keep the failure, never cache it
                    results.append(exc.result)
            envelopes: list[ResultEnvelope] = finish_task.submit(
                _q(engine), _q(prepared), _q(results)
            ).result()
            return envelopes
        finally:
            prepared.close()

    def drive(self, unit: Unit) -> tuple[list[ResultEnvelope], bool]:
        """One unit, start to records. Returns (envelopes, came_from_record_store)."""
        keys = self.engine.record_keys(unit)
        if (stored := self._stored(unit, keys)) is not None:
            for env in stored:
                progress.emit(
                    "document",
                    path=env.source.path,
                    status=env.status,
                    cached=True,
                    pages=env.source.pages,
                    windows=len(env.plan.windows),
                )
            return stored, True
        started = time.perf_counter()
        limit = self.options.max_failures
        if limit is not None and self.failures >= limit:  # never started, never cached
            skipped = NotAttempted(f"not attempted: the batch reached --max-failures {limit}")
            envelopes = self.engine.failed(unit, skipped, started)
        else:
            for path in unit.paths:
                progress.emit("started", path=str(path))
            try:
                envelopes = self._compute(unit)
            except Exception as exc:  # a bug must not sink the batch; the record is never final
                envelopes = self.engine.failed(unit, exc, started)
            with self._failures_lock:
                self.failures += sum(env.status == "failed" for env in envelopes)
        for key, env in zip(keys, envelopes, strict=True):
            if key and is_final(env.errors):  # never cache a failure
                self.store.put(key, env.model_dump(mode="json"))
            progress.emit(
                "document",
                path=env.source.path,
                status=env.status,
                cached=False,
                pages=0,
                windows=0,
            )
        return envelopes, False

    def run(self, paths: Sequence[str | Path]) -> tuple[list[ResultEnvelope], set[int]]:
        """Every document; envelopes in input order and the indices that came from records."""
        units, of_path = self.engine.units(paths)
        workers = max(2, min(len(units), self.engine.settings.max_concurrency))
        try:
            with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docvl-doc") as pool:
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
) -> list[ResultEnvelope]:
    options = options or RunOptions()
    envelopes, cached = process_documents(paths, settings, options)
    if out:
        atomic_write_jsonl(Path(out), (e.model_dump(mode="json") for e in envelopes))
    if options.artifacts:
        report.publish(envelopes, cached, title=f"docvl batch: {len(envelopes)} documents")
    return envelopes


@flow(name="docvl-analyze-document", task_runner=thread_runner(16))
def analyze_document(
    path: str, settings: Settings, out: str | None = None, options: RunOptions | None = None
) -> ResultEnvelope:
    options = options or RunOptions()
    envelopes, cached = process_documents([path], settings, options)
    if out:
        atomic_write_jsonl(Path(out), [envelopes[0].model_dump(mode="json")])
    if options.artifacts:
        report.publish(envelopes, cached, title=f"docvl document: {path}")
    return envelopes[0]


def run_batch(
    paths: Sequence[str | Path],
    settings: Settings,
    out: Path | None,
    show_progress: bool = False,
    options: RunOptions | None = None,
) -> list[ResultEnvelope]:
    """``docvl run``: the batch flow in this process (ephemeral server unless PREFECT_API_URL).

    Model calls are bounded by ``settings.max_concurrency`` in process; ``options.global_limit``
    adds the Prefect global concurrency limit shared by every process on the server (opt-in: it
    costs about 1 s per call on SQLite, see bench/RESULTS-flows.md).
    """
    batch = analyze_batch.with_options(task_runner=thread_runner(2 * settings.max_concurrency + 4))
    # Heavy imports on this thread (overlapping a local server's start-up), not in the workers.
    api = local_api_url(settings, while_starting=lambda: preload(settings))
    preload(settings)  # imported already when a server was just started
    updates: dict[Any, Any] = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    if api is not None:
        updates[PREFECT_API_URL] = api
    with (
        temporary_settings(updates=updates),
        progress.progress_bar(len(paths), enabled=show_progress),
    ):
        result: list[ResultEnvelope] = batch(
            [str(p) for p in paths], settings, str(out) if out else None, options
        )
    return result
