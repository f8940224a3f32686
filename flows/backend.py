"""The model backend of a flow run: built lazily (a fully cached run never loads a model), from
the factory ``RunOptions.backend_factory`` names, with worker-local settings in deployed runs."""

# No `from __future__ import annotations`: kept like docvl.flows.analyze, whose flows Prefect
# inspects.

import importlib
import os
import threading
from collections.abc import Callable, Sequence

from prefect.runtime import deployment

from docvl.pipeline.model.base import Generation, GenerationRequest, ModelBackend
from docvl.pipeline.model.factory import make_backend
from docvl.pipeline.plan.prompt import Part
from docvl.pipeline.settings import Settings

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
    "request_deadline_s",
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
