"""Prefect tasks wrapping the pipeline stages (``pipeline.analyze``): prepare, window, finish, write.

* Retries: only when the exception is a retryable :class:`~pipeline.errors.DocvlError` (BackendError);
  bad input, validation failures and programming errors fail at once.
* Caching: a window's result is persisted (``settings.cache_dir/'prefect-results'`` unless the flow is
  given another storage) under a key of file sha256 + ``settings.fingerprint()`` + model id + schema
  versions + window index, so a rerun after a crash or a backend failure recomputes only missing windows.
  The backend and the loaded document are never part of a key (they are passed ``quote``-d).
* Whole documents are skipped earlier, by the flow, from the record store (see :mod:`flows.store`).
* Every task that calls the model carries the tag :data:`MODEL_TAG`. A tag concurrency limit set on the
  Prefect server (``prefect concurrency-limit create docvl-model 8``) then caps model calls across every
  process and worker of that server (at no measurable cost when no limit is set; a process reads the
  limit on its first model call, so create it before starting workers).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from flows import progress
from pipeline.errors import BackendError, BackendUnavailable, DocvlError, ErrorRecord
from pipeline.result import ResultEnvelope, failed_envelope
from pipeline.settings import Settings

if TYPE_CHECKING:
    from prefect import Task
    from prefect.client.schemas.objects import TaskRun
    from prefect.states import State

    from pipeline.backends.base import ModelBackend
    from pipeline.count import TokenCounter

MODEL_TAG = "docvl-model"

#: Error codes after which a document is worth running again (its record is not final).
RERUN_CODES = frozenset({BackendError.code, BackendUnavailable.code, "internal_error"})


def is_final(envelope: ResultEnvelope) -> bool:
    """True when rerunning cannot change the result: ok/skipped, or failed only for bad input."""
    return not any(e.code in RERUN_CODES for e in envelope.errors)


class WindowBackendFailure(BackendError):
    """Raised by ``window_task`` when the window's result holds a retryable backend error.

    ``run_window`` never raises: it records failures in the WindowResult. Raising here makes Prefect retry
    the window (with backoff) and keeps the failed result out of the cache; after the last attempt the flow
    takes ``result`` from the exception and the document's record comes out partial/failed, not final.
    """

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


def retryable_errors(window_result: Any) -> list[ErrorRecord]:
    records = list(window_result.errors) + [t.error for t in window_result.tasks if t.error is not None]
    return [r for r in records if r.code == BackendError.code]


def retry_backend_errors(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """``retry_condition_fn``: retry only retryable docvl errors (BackendError), never bad input."""
    try:
        state.result(raise_on_failure=True)
    except DocvlError as exc:
        return exc.retryable
    except Exception:
        return False
    return False


def cache_prefix(sha256: str, settings: Settings, schema_version: str) -> str:
    return f"{sha256}|{settings.fingerprint()}|{settings.model}|{schema_version}"


def window_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    raw = cache_prefix(parameters["sha256"], parameters["settings"], parameters["schema_version"])
    return "docvl-window-" + hashlib.sha256(f"{raw}|{parameters['window_index']}".encode()).hexdigest()


@task(name="prepare", persist_result=False)
def prepare_task(path: Path, settings: Settings, counter: TokenCounter) -> Any:
    """Load and plan one document. Bad input becomes a failed envelope (returned, not raised)."""
    from pipeline import analyze as stage

    try:
        prepared = stage.prepare(path, settings, counter)
    except DocvlError as exc:
        if exc.retryable:
            raise
        return failed_envelope(str(path), [exc.record()])
    plan = prepared.plan
    progress.emit("planned", path=str(path), pages=plan.pages, windows=len(plan.windows))
    return prepared


@task(name="window", tags=[MODEL_TAG], persist_result=True, cache_key_fn=window_cache_key, retries=2,
      retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_condition_fn=retry_backend_errors)
def window_task(prepared: Any, window_index: int, sha256: str, settings: Settings, schema_version: str,
                backend: ModelBackend) -> Any:
    """One model call (all tasks of the window share its prefill). Retried on BackendError only."""
    from pipeline import analyze as stage

    result = stage.run_window(prepared, window_index, backend, settings)
    if failures := retryable_errors(result):
        raise WindowBackendFailure(f"window {window_index}: {failures[0].message}", result)
    window = prepared.plan.windows[window_index]
    progress.emit("window", path=str(prepared.path), pages=window.last_page - window.first_page + 1)
    return result


@task(name="finish", tags=[MODEL_TAG], persist_result=False, retries=2,
      retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_condition_fn=retry_backend_errors)
def finish_task(prepared: Any, window_results: list[Any], settings: Settings, backend: ModelBackend) -> ResultEnvelope:
    """Merge the windows (may call the model for a reduce step) into the document's envelope."""
    from pipeline import analyze as stage

    envelope: ResultEnvelope = stage.finish(prepared, window_results, backend, settings)
    return envelope


@task(name="ask-across-documents", tags=[MODEL_TAG], persist_result=False, retries=2,
      retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_condition_fn=retry_backend_errors)
def shared_task(paths: list[Path], settings: Settings, backend: ModelBackend,
                counter: TokenCounter) -> list[ResultEnvelope]:
    """A question across documents whose pages share windows (``--share-windows --task ask``)."""
    from pipeline.crossdoc import analyze_shared

    return list(analyze_shared(paths, settings, backend, counter))
