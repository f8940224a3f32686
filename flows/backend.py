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

    def __init__(
        self, settings: Settings, factory: BackendFactory, built: ModelBackend | None = None
    ) -> None:
        self.name: str = settings.backend
        self.model_id: str = settings.model
        self._settings, self._factory = settings, factory
        self._inner: ModelBackend | None = built  # one built ahead (:func:`prebuild`)
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


#: Backends built ahead of their flow run: (settings, factory spec, backend).
_PREBUILT: list[tuple[Settings, str | None, ModelBackend]] = []
_prebuilt_lock = threading.Lock()


def prebuild(settings: Settings, spec: str | None) -> None:
    """Build the backend now (``docvl run`` loads the model while its Prefect server boots); the
    flow run's :class:`LazyBackend` with equal settings and factory takes it
    (:func:`take_prebuilt`). Pair with :func:`discard_prebuilt`."""
    backend = load_factory(spec)(settings)
    with _prebuilt_lock:
        _PREBUILT.append((settings, spec, backend))


def take_prebuilt(settings: Settings, spec: str | None) -> ModelBackend | None:
    with _prebuilt_lock:
        for i, (built_for, built_spec, backend) in enumerate(_PREBUILT):
            if built_for == settings and built_spec == spec:
                del _PREBUILT[i]
                return backend
    return None


def discard_prebuilt() -> None:
    """Close the backends built ahead that no flow run took."""
    with _prebuilt_lock:
        left = [backend for _, _, backend in _PREBUILT]
        _PREBUILT.clear()
    for backend in left:
        backend.close()


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
