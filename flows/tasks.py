"""Prefect tasks wrapping the engine's stages (:class:`docvl.pipeline.engine.Engine`): prepare,
window, finish.

They add what Prefect is for and decide nothing about documents:

* Caching: a window's result persists under the engine's window key
  (:func:`docvl.pipeline.engine.identity.cache_key`: file hashes, settings, model, schema versions,
  envelope and prompt versions, window). A result holding any error that is not final
  (:data:`docvl.pipeline.policy.FAILURE_POLICY`) is raised as :class:`WindowFailed` instead, so it
  is never cached.
* Retries: only a window whose error is retried in the run (BackendError), ``RunOptions.retries``
  times with backoff; bad input, setup problems (BackendUnavailable) and bugs fail at once.
* Every task that calls the model carries the tag :data:`MODEL_TAG`. A tag concurrency limit set on
  the Prefect server (``prefect concurrency-limit create docvl-model 8``) then caps model calls
  across every process and worker of that server (a process reads the limit on its first model
  call, so create it before starting workers).
"""

from __future__ import annotations

from typing import Any

from prefect import Task, task
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext

from docvl.flows import progress
from docvl.pipeline.engine import Engine, Prepared, Unit, WindowResult
from docvl.pipeline.policy import is_final, retried_in_run
from docvl.pipeline.result import ResultEnvelope

MODEL_TAG = "docvl-model"


class WindowFailed(Exception):
    """Raised by :func:`window_task` when the window's result holds an error that is not final.

    Raising keeps the result out of the cache and lets Prefect retry; after the last attempt the
    runner takes ``result`` from the exception, and the document's record comes out partial/failed,
    never final.
    """

    def __init__(self, result: WindowResult) -> None:
        records = result.error_records()
        super().__init__(
            f"window {result.window.index + 1}: {records[0].message if records else ''}"
        )
        self.result = result
        self.retry = any(retried_in_run(r.code) for r in records)


def retry_condition(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """``retry_condition_fn``: retry only a window whose failure is retried in the run."""
    try:
        state.result(raise_on_failure=True)
    except WindowFailed as exc:
        return exc.retry
    except Exception:
        return False
    return False


def window_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return str(parameters["key"])


@task(name="prepare", persist_result=False)
def prepare_task(engine: Engine, unit: Unit) -> Prepared:
    """Load and plan a unit (bad input becomes error records inside)."""
    prepared = engine.prepare(unit)
    for pass_ in prepared.passes:
        for doc_plan in pass_.plans:
            progress.emit(
                "planned", path=doc_plan.path, pages=doc_plan.pages, windows=len(doc_plan.windows)
            )
    return prepared


@task(
    name="window",
    tags=[MODEL_TAG],
    persist_result=True,
    cache_key_fn=window_cache_key,
    retry_condition_fn=retry_condition,
)
def window_task(engine: Engine, prepared: Prepared, job: tuple[int, int], key: str) -> WindowResult:
    """One window: render, then every task of its pass in one batched call (cached by ``key``)."""
    result = engine.run_window(prepared, job)
    if not is_final(result.error_records()):
        raise WindowFailed(result)
    window = result.window
    path = str(prepared.unit.paths[prepared.passes[job[0]].docs[window.spans[0].doc]])
    progress.emit("window", path=path, pages=window.last_page - window.first_page + 1)
    return result


@task(name="finish", tags=[MODEL_TAG], persist_result=False)
def finish_task(
    engine: Engine, prepared: Prepared, results: list[WindowResult]
) -> list[ResultEnvelope]:
    """Reduce (may call the model), check completeness, ground: the unit's envelopes."""
    return engine.finish(prepared, results)
