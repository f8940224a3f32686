"""``analyze_document`` / ``analyze_batch`` Prefect flows and ``run_batch`` (what ``docvl run`` calls).

Per document: hash the file; skip it when a final record for ``sha256 + settings.fingerprint()`` exists;
else ``prepare`` (load + plan), one ``window`` task per planned window (model calls, cached per window),
``finish`` (merge), and an atomic record write (the resume point). The JSONL output is rebuilt from the
envelopes at the end and replaced atomically: a torn or duplicated line cannot exist, and a batch killed
with SIGKILL recomputes only its unfinished documents (and, inside them, only unfinished windows).

Concurrency: documents run in parallel (driver threads submitting to the flow's ThreadPoolTaskRunner);
model calls go through :class:`flows.limits.LimitedBackend` (local semaphore + Prefect global limit).
The backend is built lazily once per flow run (``make_backend`` or ``backend_factory``, an import path
``module:callable(settings) -> ModelBackend`` used by tests), so fully cached runs never load a model.
"""

# No `from __future__ import annotations`: Prefect resolves flow parameter types (Settings) at load time.

import concurrent.futures as cf
import contextvars
import importlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from flows import progress, report
from flows.limits import DEFAULT_LIMIT_NAME, LimitedBackend, ModelLimiter, ensure_global_limit
from flows.store import RecordStore, atomic_write_jsonl, record_key, sha256_file
from flows.tasks import (
    WindowBackendFailure,
    finish_task,
    is_final,
    prepare_task,
    shared_task,
    window_task,
)
from pipeline.backends.base import Generation, GenerationRequest, ModelBackend
from pipeline.count import TokenCounter
from pipeline.errors import DocvlError, ErrorRecord
from pipeline.prompt import Part
from pipeline.result import ENVELOPE_VERSION, ResultEnvelope, failed_envelope
from pipeline.settings import Settings

log = logging.getLogger(__name__)
INTERNAL_ERROR = "internal_error"


def load_factory(spec: str | None) -> Any:
    if not spec:
        from pipeline.backends.factory import make_backend

        return make_backend
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


class LazyBackend:
    """Builds the real backend on the first call, once, thread-safely; closes it only if built."""

    def __init__(self, settings: Settings, factory: Any) -> None:
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

    def generate(self, content: Sequence[Part], requests: Sequence[GenerationRequest]) -> list[Generation]:
        return self.get().generate(content, requests)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()


#: Settings that belong to the machine running a flow, not to the result: a deployed or served run takes
#: them from its own DOCVL_* environment (per-worker vLLM URL, device, password, slots, cache dir).
WORKER_LOCAL = ("base_url", "device", "max_concurrency", "request_timeout_s", "password", "api_key_env",
                "render_workers", "cache_dir")


def localize(settings: Settings) -> Settings:
    """In deployed/served runs, override :data:`WORKER_LOCAL` fields set in this process's environment.

    Deployment parameters are validated without reading the environment, and the password is never stored
    in them. Runs started in-process (``docvl run``) are left alone: the CLI already merged the env.
    """
    from prefect.runtime import deployment

    names = [f for f in WORKER_LOCAL if f"DOCVL_{f.upper()}" in os.environ]
    if not names or deployment.id is None:
        return settings
    fresh = Settings(**{})
    return settings.model_copy(update={f: getattr(fresh, f) for f in names})


def thread_runner(workers: int) -> Any:
    return ThreadPoolTaskRunner(max_workers=workers)


def schema_version(settings: Settings) -> str:
    """Envelope version + each task's output schema version (part of every cache key)."""
    from pipeline.tasks import task_specs

    return ";".join([ENVELOPE_VERSION, *(f"{s.name}={s.schema_version}" for s in task_specs(settings))])


@dataclass
class _Run:
    settings: Settings
    backend: LimitedBackend
    schema_version: str
    store: RecordStore
    tasks: dict[str, Any]
    counter_lock: threading.Lock = field(default_factory=threading.Lock)
    counter: TokenCounter | None = None

    def token_counter(self) -> TokenCounter:
        with self.counter_lock:
            if self.counter is None:
                from pipeline.qwen import load_tokenizer

                self.counter = TokenCounter(load_tokenizer(self.settings.model))
            return self.counter


def _close(prepared: Any) -> None:
    closer = getattr(prepared, "close", None) or getattr(getattr(prepared, "loaded", None), "close", None)
    if callable(closer):
        closer()


def _compute(run: _Run, path: Path, sha: str) -> ResultEnvelope:
    prepared = run.tasks["prepare"].submit(path, run.settings, quote(run.token_counter())).result()
    if isinstance(prepared, ResultEnvelope):
        return prepared
    try:
        futures = [run.tasks["window"].submit(quote(prepared), i, sha, run.settings, run.schema_version,
                                              quote(run.backend)) for i in range(len(prepared.plan.windows))]
        results = []
        for future in futures:
            try:
                results.append(future.result())
            except WindowBackendFailure as exc:  # retries exhausted: keep the failure, never cache it
                results.append(exc.result)
        envelope: ResultEnvelope = run.tasks["finish"].submit(
            quote(prepared), quote(results), run.settings, quote(run.backend)).result()
        return envelope
    finally:
        _close(prepared)


def _drive(run: _Run, path: Path, sha: str | None) -> tuple[ResultEnvelope, bool]:
    """One document, start to record. Returns (envelope, came_from_record_store)."""
    key = record_key(sha, run.settings) if sha else None
    if key and (record := run.store.get(key)) is not None:
        cached = ResultEnvelope.model_validate(record)
        if is_final(cached):
            progress.emit("document", path=str(path), status=cached.status, cached=True,
                          pages=cached.source.pages, windows=len(cached.plan.windows))
            return cached, True
    if sha is None:
        envelope = run.tasks["prepare"].submit(path, run.settings, quote(run.token_counter())).result()
        if not isinstance(envelope, ResultEnvelope):  # pragma: no cover - unreadable for hashing, readable now
            _close(envelope)
            envelope = failed_envelope(str(path), [ErrorRecord(code="corrupt_document", message="unreadable")])
    else:
        try:
            envelope = _compute(run, path, sha)
        except DocvlError as exc:
            envelope = failed_envelope(str(path), [exc.record()])
        except Exception as exc:  # a bug must not sink the batch; the record is not final, so it reruns
            log.exception("internal error on %s", path)
            envelope = failed_envelope(str(path), [ErrorRecord(code=INTERNAL_ERROR, message=repr(exc))])
    if envelope.source.sha256 is None:
        envelope.source.sha256 = sha
    if envelope.model is None:
        from pipeline.analyze import model_info

        envelope.model = model_info(run.backend, run.settings)
    if key:  # a plain call, not a task: one task run less per document (about 50 ms on 2 cores)
        run.store.put(key, envelope.model_dump(mode="json"))
    progress.emit("document", path=str(path), status=envelope.status, cached=False, pages=0, windows=0)
    return envelope, False


def storage_for(settings: Settings, result_storage: str | None) -> Any:
    """A Path (default ``cache_dir/prefect-results``) or, with ``block:SLUG``, a saved storage block slug."""
    if result_storage and result_storage.startswith("block:"):
        return result_storage.removeprefix("block:")
    return Path(result_storage or Path(settings.cache_dir) / "prefect-results").resolve()


def process_documents(paths: Sequence[str | Path], settings: Settings, *, backend_factory: str | None = None,
                      result_storage: str | None = None, global_limit: str | None = DEFAULT_LIMIT_NAME,
                      retry_delay_s: float = 2.0, doc_workers: int | None = None,
                      ) -> tuple[list[ResultEnvelope], set[int]]:
    """Run every document inside the current flow run. Returns envelopes (input order) and cached indices."""
    settings = localize(settings)
    version = schema_version(settings)  # raises UsageError/SchemaNotFound for a bad task configuration
    if global_limit:
        ensure_global_limit(global_limit, settings.max_concurrency)
    limiter = ModelLimiter(settings.max_concurrency, global_limit)
    lazy = LazyBackend(settings, load_factory(backend_factory))
    storage = storage_for(settings, result_storage)
    retries = max(settings.max_attempts - 1, 0)
    delays = [retry_delay_s * 2**i for i in range(max(retries, 1))]
    run = _Run(settings=settings, backend=LimitedBackend(lazy, limiter), schema_version=version,
               store=RecordStore.for_settings(settings),
               tasks={"prepare": prepare_task,
                      "window": window_task.with_options(result_storage=storage, retries=retries,
                                                         retry_delay_seconds=delays),
                      "finish": finish_task.with_options(retries=retries, retry_delay_seconds=delays),
                      "shared": shared_task.with_options(retries=retries, retry_delay_seconds=delays)})
    files = [Path(p) for p in paths]
    if settings.share_windows and "ask" in settings.tasks and len(files) > 1:
        # One question over every document's pages: their windows are shared, so they run as one unit.
        try:
            shared = run.tasks["shared"].submit(files, settings, quote(run.backend), quote(run.token_counter()))
            return shared.result(), set()
        finally:
            lazy.close()
    shas: list[str | None] = []
    for p in files:
        try:
            shas.append(sha256_file(p))
        except OSError:
            shas.append(None)
    # One driver per distinct content: the same bytes under two names are computed once.
    firsts: dict[str, int] = {}
    owners = [firsts.setdefault(s, i) if s else i for i, s in enumerate(shas)]
    unique = sorted(set(owners))
    workers = doc_workers or max(2, min(len(unique), settings.max_concurrency))
    try:
        with cf.ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="docvl-doc") as pool:
            futs = {i: pool.submit(contextvars.copy_context().run, _drive, run, files[i], shas[i]) for i in unique}
            done = {i: f.result() for i, f in futs.items()}
    finally:
        lazy.close()
    envelopes, cached = [], set()
    for i, owner in enumerate(owners):
        env, was_cached = done[owner]
        if owner != i:
            env, was_cached = env.model_copy(deep=True), True
            env.source.path = str(files[i])
        envelopes.append(env)
        if was_cached:
            cached.add(i)
    get_run_logger().info("docvl: %d documents, %d from records, %d model calls, peak concurrency %d",
                          len(files), len(cached), run.backend.calls, limiter.peak)
    return envelopes, cached


@flow(name="docvl-analyze-batch", task_runner=thread_runner(16), log_prints=False)
def analyze_batch(paths: list[str], settings: Settings, out: str | None = None, backend_factory: str | None = None,
                  result_storage: str | None = None, global_limit: str | None = None,
                  retry_delay_s: float = 2.0, artifacts: bool = True) -> list[ResultEnvelope]:
    envelopes, cached = process_documents(paths, settings, backend_factory=backend_factory,
                                          result_storage=result_storage, global_limit=global_limit,
                                          retry_delay_s=retry_delay_s)
    if out:
        atomic_write_jsonl(Path(out), (e.model_dump(mode="json") for e in envelopes))
    if artifacts:
        report.publish(envelopes, cached, title=f"docvl batch: {len(envelopes)} documents")
    return envelopes


@flow(name="docvl-analyze-document", task_runner=thread_runner(16))
def analyze_document(path: str, settings: Settings, out: str | None = None, backend_factory: str | None = None,
                     result_storage: str | None = None, global_limit: str | None = None,
                     retry_delay_s: float = 2.0, artifacts: bool = True) -> ResultEnvelope:
    envelopes, cached = process_documents([path], settings, backend_factory=backend_factory,
                                          result_storage=result_storage, global_limit=global_limit,
                                          retry_delay_s=retry_delay_s)
    if out:
        atomic_write_jsonl(Path(out), [envelopes[0].model_dump(mode="json")])
    if artifacts:
        report.publish(envelopes, cached, title=f"docvl document: {path}")
    return envelopes[0]


def run_batch(paths: Sequence[str | Path], settings: Settings, out: Path | None, progress: bool = False, *,
              backend_factory: str | None = None, global_limit: str | None = None,
              ) -> list[ResultEnvelope]:
    """``docvl run``: the batch flow in this process (ephemeral server unless PREFECT_API_URL is set).

    Model calls are bounded by ``settings.max_concurrency`` in process; ``global_limit`` (e.g.
    ``"docvl-model"``) adds the Prefect global concurrency limit shared by every process on the server
    (opt-in: it costs about 1 s per call on SQLite, see bench/RESULTS-flows.md).
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.progress import progress_bar

    batch = analyze_batch.with_options(task_runner=thread_runner(2 * settings.max_concurrency + 4))
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), \
            progress_bar(len(paths), enabled=progress):
        result: list[ResultEnvelope] = batch(
            [str(p) for p in paths], settings, str(out) if out else None,
            backend_factory=backend_factory, global_limit=global_limit)
    return result
