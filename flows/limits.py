"""Model-call concurrency: one in-process semaphore plus an optional Prefect global concurrency
limit.

Measured on the ephemeral server (2 cores, prefect 3.9.1): 16 calls of 0.2 s through a global limit
of 2 took 10.8 s instead of 1.6 s, because a blocked acquire sleeps for the server's ``Retry-After``
before asking again. So every call first takes a slot of a local semaphore sized
``settings.max_concurrency`` (no latency, exact within one process) and then, when a global limit
name is given, a slot of that Prefect limit (protects a shared GPU/vLLM pool across processes and
workers). With the local semaphore in front, a single process never waits on the global limit at
all; only cross-process contention does.

The global limit is created on demand with ``settings.max_concurrency`` slots when it does not
exist; an existing limit is never resized (operators size it to the server pool:
``prefect gcl update``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence

from docvl.flows.guard import check_deadline
from docvl.flows.memory import check_memory
from docvl.pipeline.model.base import Generation, GenerationRequest, ModelBackend
from docvl.pipeline.plan.prompt import Part

DEFAULT_LIMIT_NAME = "docvl-model"
log = logging.getLogger(__name__)


def ensure_global_limit(name: str, slots: int) -> bool:
    """Create the Prefect global concurrency limit ``name`` if missing. Returns True when it exists
    now."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return True
        except ObjectNotFound:
            pass
        try:
            client.upsert_global_concurrency_limit_by_name(name, slots)
        except Exception as exc:  # a concurrent creator won the race, or an old server
            log.warning("could not create global concurrency limit %s: %s", name, exc)
            return False
    return True


class ModelLimiter:
    def __init__(self, slots: int, global_name: str | None = None) -> None:
        self.slots = slots
        self.global_name = global_name
        self._local = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.active = 0
        self.peak = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        with self._local, self._global():
            with self._lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            try:
                yield
            finally:
                with self._lock:
                    self.active -= 1

    def _global(self) -> contextlib.AbstractContextManager[object]:
        if not self.global_name:
            return contextlib.nullcontext()
        from prefect.concurrency.sync import concurrency

        return concurrency(self.global_name, occupy=1)


class LimitedBackend:
    """A :class:`ModelBackend` proxy: every ``generate`` holds a limiter slot and is counted."""

    def __init__(self, inner: ModelBackend, limiter: ModelLimiter) -> None:
        self.inner = inner
        self.limiter = limiter
        self.name = inner.name
        self.model_id = inner.model_id
        self.calls = 0
        self._lock = threading.Lock()

    def generate(
        self, content: Sequence[Part], requests: Sequence[GenerationRequest]
    ) -> list[Generation]:
        check_deadline()  # the leftover work of a timed-out document stops here
        check_memory()  # and that of a document failed for memory
        with self.limiter.slot():
            check_deadline()
            with self._lock:
                self.calls += 1
            return self.inner.generate(content, requests)

    def close(self) -> None:
        self.inner.close()
