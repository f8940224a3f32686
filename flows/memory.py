"""The run's memory budget (issue 9): ``Settings.memory_budget_mb`` over the whole process tree.

A :class:`MemoryGuard` samples the resident memory of this process and every descendant (render
workers, LibreOffice, the local Prefect server) every :data:`SAMPLE_INTERVAL_S` seconds, less the
weights of a model loaded on the CPU (``exempt``: they are the price of the model, not of a
document). Over the budget it first lets the allocator give freed memory back (``gc`` and glibc's
``malloc_trim``) and samples again; still over, it fails every document in progress:

* each one's :meth:`MemoryGuard.run` stops waiting for it at once. A document that was alone in
  progress gets :class:`MemoryBudgetExceeded` (its record, final under that budget; the batch goes
  on). Several were: which one blew the budget is not known, so each is run again alone (no other
  document starts meanwhile) and only one over the budget by itself is recorded so;
* the helper processes of documents (LibreOffice, render workers; never the Prefect server) are
  killed, so a bomb inside them stops at once, and the work waiting on them fails;
* the leftover in-process work of those documents stops at its next model call
  (:func:`check_memory`, called by :class:`docvl.flows.limits.LimitedBackend`), and documents not
  started yet wait until memory is back under the budget or that leftover work has ended, so they
  are not blamed for it.

A Python thread cannot be killed: what the leftover work holds is freed when it ends.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import contextvars
import ctypes
import gc
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import psutil

from docvl.pipeline.errors import MemoryBudgetExceeded, WorkAbandoned

T = TypeVar("T")
MIB = 1024 * 1024
#: Seconds between two samples of the process tree (a bomb grows ~1 GB/s at most on this box).
SAMPLE_INTERVAL_S = 0.2
#: Names (process name or first arguments) of the helpers killed on a trip.
HELPER_MARKS = ("soffice", "oosplash", "multiprocessing")

#: Set in a document's work while it runs under a guard: the event is set once it was failed.
ABANDONED: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "docvl_memory_abandoned", default=None
)


def check_memory() -> None:
    """Raise :class:`WorkAbandoned` in the work of a document failed for memory."""
    event = ABANDONED.get()
    if event is not None and event.is_set():
        raise WorkAbandoned("the run went over its memory budget; this document's work stopped")


def tree_rss(root: psutil.Process | None = None) -> int:
    """Resident bytes of ``root`` (this process by default) and all its descendants."""
    root = root or psutil.Process()
    total = 0
    with contextlib.suppress(psutil.Error):
        total += root.memory_info().rss
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
    return total


def is_helper(proc: psutil.Process) -> bool:
    """A document's helper process: LibreOffice or a multiprocessing (render) worker."""
    try:
        words = " ".join([proc.name(), *proc.cmdline()[:4]])
    except psutil.Error:
        return False
    return "prefect" not in words and any(mark in words for mark in HELPER_MARKS)


def kill_helpers(root: psutil.Process | None = None) -> int:
    """SIGKILL every helper process under ``root`` (this process); returns how many."""
    root = root or psutil.Process()
    try:
        helpers = [p for p in root.children(recursive=True) if is_helper(p)]
    except psutil.Error:
        return 0
    for proc in helpers:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return len(helpers)


def model_bytes(backend: object) -> int:
    """Bytes of a model's weights held in this process's memory (on the CPU), else 0. Looks
    through proxies (``inner``) and lazy holders (``_inner``) to a backend's ``model``."""
    seen = 0
    while backend is not None and seen < 4:
        model = getattr(backend, "model", None)
        if model is not None and hasattr(model, "parameters"):
            return sum(
                p.numel() * p.element_size() for p in model.parameters() if p.device.type == "cpu"
            )
        backend = getattr(backend, "inner", None) or getattr(backend, "_inner", None)
        seen += 1
    return 0


def release_freed_memory() -> None:
    """Collect garbage and ask glibc to return freed heap pages to the system."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass
class _Active:
    name: str
    abandoned: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    message: str = ""
    #: Whether it was the only document in progress when the run went over the budget.
    alone: bool = False


class _Shared(Exception):
    """Over the budget while other documents were in progress too: the blame is not known yet."""


class MemoryGuard:
    """Keeps a run's process tree under ``budget_mb`` MiB (0: no budget, nothing is sampled).

    Use it as a context manager around the batch (the sampler thread) and run each document's work
    through :meth:`run`. ``sample``, ``exempt`` and ``kill`` are injectable for tests."""

    def __init__(
        self,
        budget_mb: int,
        *,
        exempt: Callable[[], int] = lambda: 0,
        sample: Callable[[], int] = tree_rss,
        kill: Callable[[], int] = kill_helpers,
        interval_s: float = SAMPLE_INTERVAL_S,
    ) -> None:
        self.budget = budget_mb * MIB
        self.budget_mb = budget_mb
        self._exempt, self._sample, self._kill = exempt, sample, kill
        self._interval = interval_s
        self._lock = threading.Lock()
        self._active: dict[int, _Active] = {}
        self._clear = threading.Condition(self._lock)
        self._over = False
        self._running = 0  # documents in progress beside each other
        self._solo = False  # a document runs alone
        self._solo_waiting = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Highest counted resident bytes seen, and how many times the budget was exceeded.
        self.peak = 0
        self.trips = 0

    def __enter__(self) -> MemoryGuard:
        if self.budget and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="docvl-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def counted(self) -> int:
        """Resident bytes of the process tree that count against the budget now."""
        used = max(0, self._sample() - self._exempt())
        self.peak = max(self.peak, used)
        return used

    def check(self) -> bool:
        """Sample once; over the budget (after releasing freed memory), fail the documents in
        progress. Returns True when it did."""
        used = self.counted()
        if used <= self.budget:
            self._set_over(False)
            return False
        release_freed_memory()
        used = self.counted()
        self._set_over(used > self.budget)
        if used <= self.budget:
            return False
        with self._lock:
            victims = [a for a in self._active.values() if not a.abandoned.is_set()]
            message = (
                f"the run went over its memory budget of {self.budget_mb:,} MiB "
                f"({used // MIB:,} MiB resident in docvl, its render workers and LibreOffice, "
                f"{len(victims)} document(s) in progress) (DOCVL_MEMORY_BUDGET_MB)"
            )
            for active in victims:
                active.message = message
                active.alone = len(victims) == 1
                active.abandoned.set()
                active.wake.set()
        if victims:
            self.trips += 1
            self._kill()
        return bool(victims)

    def run(self, name: str, fn: Callable[[], T]) -> T:
        """``fn()`` (one document's work), or :class:`MemoryBudgetExceeded` as soon as the run goes
        over the budget while it runs. A document failed while others were in progress too is run
        again alone (no other document starts meanwhile), so only the one that blows the budget by
        itself is recorded as ``memory_budget``."""
        if not self.budget:
            return fn()
        try:
            return self._attempt(name, fn, solo=False)
        except _Shared:
            return self._attempt(name, fn, solo=True)

    def _attempt(self, name: str, fn: Callable[[], T], *, solo: bool) -> T:
        self._enter(solo)
        active = _Active(name)
        future: cf.Future[T] = cf.Future()

        def target() -> None:
            ABANDONED.set(active.abandoned)
            future.set_running_or_notify_cancel()
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                active.wake.set()
                self._finished(active)

        try:
            with self._lock:
                self._active[id(active)] = active
            context = contextvars.copy_context()
            worker = threading.Thread(target=context.run, args=(target,), name="docvl-doc-memory")
            worker.daemon = True  # abandoned work never holds up the process's exit
            worker.start()
            active.wake.wait()
        finally:
            self._leave(solo)
        if active.abandoned.is_set():
            if solo or active.alone:
                raise MemoryBudgetExceeded(active.message)
            raise _Shared
        return future.result()

    def _enter(self, solo: bool) -> None:
        """Wait for a turn: never while memory is over the budget and abandoned work still runs
        (a new document is not blamed for it), never beside a document running alone; a solo
        turn waits for every other document to end, and holds new ones back meanwhile."""
        with self._lock:
            if solo:
                self._solo_waiting += 1
            try:
                self._clear.wait_for(
                    lambda: (
                        not (self._over and self._abandoned_running())
                        and not self._solo
                        and (self._running == 0 if solo else self._solo_waiting == 0)
                    )
                )
            finally:
                if solo:
                    self._solo_waiting -= 1
            if solo:
                self._solo = True
            else:
                self._running += 1

    def _leave(self, solo: bool) -> None:
        with self._lock:
            if solo:
                self._solo = False
            else:
                self._running -= 1
            self._clear.notify_all()

    def _finished(self, active: _Active) -> None:
        with self._lock:
            self._active.pop(id(active), None)
            self._clear.notify_all()
        if active.abandoned.is_set():
            release_freed_memory()

    def _set_over(self, over: bool) -> None:
        with self._lock:
            self._over = over
            if not over:
                self._clear.notify_all()

    def _abandoned_running(self) -> bool:
        return any(a.abandoned.is_set() for a in self._active.values())

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(Exception):  # sampling must never sink the batch
                self.check()


def guard_for(budget_mb: int, backend: Any) -> MemoryGuard:
    """The guard of a run whose model is ``backend`` (its CPU weights are exempt)."""
    return MemoryGuard(budget_mb, exempt=lambda: model_bytes(backend))
