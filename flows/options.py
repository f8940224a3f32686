"""``RunOptions``: how the Prefect runner runs a batch (never what it computes: that is
``Settings``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RunOptions(BaseModel):
    """The runner's knobs, passed as one flow parameter (and through ``docvl trigger --param``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``module:callable(settings) -> ModelBackend`` to build the backend (tests); default: the
    #: backend factory of ``settings.backend``.
    backend_factory: str | None = None
    #: Where window results persist: a directory, or ``block:SLUG`` for a saved storage block;
    #: default ``settings.cache_dir/prefect-results``.
    result_storage: str | None = None
    #: A Prefect global concurrency limit every model call also holds a slot of (opt-in).
    global_limit: str | None = None
    #: Prefect task retries of a window whose backend call failed retryably (BackendError). Not the
    #: validation re-asks: those are ``Settings.max_attempts``.
    retries: int = Field(2, ge=0)
    #: Seconds before the first retry; doubled for each further one.
    retry_delay_s: float = Field(2.0, ge=0)
    #: Stop starting documents once this many have failed; the rest get a ``not_attempted``
    #: record (never cached). None: attempt every document.
    max_failures: int | None = Field(None, ge=1)
    #: Let a flow run whose documents failed end Completed (default: Failed, so Prefect, its
    #: automations and ``docvl trigger --wait`` see the failure).
    allow_partial: bool = False
    #: Publish Prefect artifacts (a table per run and a markdown report per document).
    artifacts: bool = True
