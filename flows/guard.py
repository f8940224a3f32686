"""Per-document guards of a flow run: the wall-time budget, the early stop of a batch on a
configuration failure, and the deadline the model calls of an abandoned document check.

* :func:`call_with_budget` runs one document's work in its own thread and waits at most
  ``settings.document_timeout_s``; past it the document is recorded as ``document_timeout`` and the
  batch goes on. A Python thread cannot be killed, so the abandoned work is told to stop instead:
  its next model call (:func:`check_deadline`, called by :class:`docvl.flows.limits.LimitedBackend`)
  raises :class:`WorkAbandoned` (never final, never cached, never retried), and its result is
  dropped.
* :class:`BatchStop` remembers the first configuration failure
  (:func:`docvl.pipeline.policy.stops_batch`: a wrong URL, a bad key, missing weights). Every
  document not started yet is then recorded as not attempted, with the same code, and one line says
  so on stderr.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from docvl.pipeline.errors import BackendUnavailable, DocumentTimeout, ErrorRecord, WorkAbandoned
from docvl.pipeline.policy import stops_batch
from docvl.pipeline.result import ResultEnvelope

T = TypeVar("T")

#: The monotonic deadline of the document whose work runs in this context (None: no budget).
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "docvl_document_deadline", default=None
)


def check_deadline() -> None:
    """Raise :class:`WorkAbandoned` when this context's document is past its budget."""
    deadline = DEADLINE.get()
    if deadline is not None and time.monotonic() > deadline:
        raise WorkAbandoned("the document ran past its time budget; its work was abandoned")


def call_with_budget(fn: Callable[[], T], budget_s: float | None) -> T:
    """``fn()``, or :class:`DocumentTimeout` once ``budget_s`` seconds have passed (None: wait)."""
    if budget_s is None:
        return fn()
    future: cf.Future[T] = cf.Future()

    def target() -> None:
        DEADLINE.set(time.monotonic() + budget_s)
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(target,), name="docvl-doc-work")
    worker.daemon = True  # an abandoned document never holds up the process's exit
    worker.start()
    try:
        return future.result(timeout=budget_s)
    except cf.TimeoutError:
        raise DocumentTimeout(
            f"the document took longer than its time budget of {budget_s:g} s "
            "(document_timeout_s, DOCVL_DOCUMENT_TIMEOUT_S)"
        ) from None


class BatchStop:
    """The first configuration failure of a batch; later documents are not attempted."""

    def __init__(self, announce: Callable[[str], None] | None = None) -> None:
        self._lock = threading.Lock()
        self.cause: ErrorRecord | None = None
        self.skipped = 0
        self._announce = announce or _stderr_line

    def note(self, envelopes: list[ResultEnvelope]) -> None:
        """Look for a configuration failure among a finished unit's errors (first one wins)."""
        for env in envelopes:
            for record in env.errors:
                if stops_batch(record.code):
                    with self._lock:
                        if self.cause is not None:
                            return
                        self.cause = record
                    self._announce(
                        f"docvl: stopping the batch early: [{record.code}] {record.message} "
                        "(every document would fail the same way; fix the setup and rerun: "
                        "finished documents are kept)"
                    )
                    return

    def skip(self) -> BackendUnavailable | None:
        """The error for a document not attempted, or None while the batch goes on."""
        with self._lock:
            cause = self.cause
            if cause is None:
                return None
            self.skipped += 1
        return BackendUnavailable(f"not attempted: the batch stopped early: {cause.message}")


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
