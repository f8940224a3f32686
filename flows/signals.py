"""SIGINT and SIGTERM for ``docvl run``: stop within seconds, keep what is finished, leave no
process behind.

The batch runs in a worker thread; the main thread only waits, so the signal handlers (which
Python runs in the main thread) fire at once even while a model call holds a worker for minutes.
On the first SIGINT or SIGTERM, :func:`run_interruptible`:

1. ignores further SIGINT/SIGTERM (a second Ctrl-C must not cut the cleanup short);
2. prints one line on stderr;
3. stops the local Prefect server(s) this process started (:func:`docvl.flows.server.stop_all`) and
   then every other child process, recursively (LibreOffice, render workers): SIGTERM, then SIGKILL
   after a short grace (psutil);
4. with ``hard_exit`` (the CLI) leaves with ``os._exit(128 + signum)`` (130, 143), skipping the
   interpreter's shutdown, which would join the batch's worker threads (a model call in flight:
   minutes) and flush Prefect's event workers at a server that is gone (hundreds of lines); without
   it, raises :class:`Interrupted` in the caller.

Nothing is lost: every finished document's record was written atomically when it finished (the
resume point), the JSONL output is only ever replaced whole, so a rerun picks up where this one
stopped. A write cut short leaves at most a hidden temporary file.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import contextvars
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

import psutil

from docvl.flows.server import stop_all

T = TypeVar("T")
HANDLED = (signal.SIGINT, signal.SIGTERM)
#: Seconds a child gets between SIGTERM and SIGKILL.
CHILD_GRACE_S = 2.0


class Interrupted(BaseException):
    """A SIGINT or SIGTERM stopped the batch (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def stop_children(grace_s: float = CHILD_GRACE_S) -> int:
    """Terminate every descendant of this process (SIGTERM, then SIGKILL); returns how many."""
    stop_all()  # the Prefect server first: its own process group, stopped the way it likes
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    return len(children)


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def run_interruptible(fn: Callable[[], T], *, hard_exit: bool = False) -> T:
    """``fn()`` in a worker thread, stopped cleanly by SIGINT/SIGTERM (see the module doc).

    Off the main thread (signal handlers cannot be set there) ``fn`` simply runs in place.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn()
    future: cf.Future[T] = cf.Future()

    def target() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    previous = {sig: signal.signal(sig, _raise) for sig in HANDLED}
    try:
        worker = threading.Thread(
            target=contextvars.copy_context().run, args=(target,), name="docvl-batch", daemon=True
        )
        worker.start()
        while True:
            try:
                return future.result(timeout=0.5)
            except cf.TimeoutError:
                continue
    except Interrupted as exc:
        for sig in HANDLED:
            signal.signal(sig, signal.SIG_IGN)
        name = signal.Signals(exc.signum).name
        print(
            f"docvl: {name}: stopping; finished documents are kept, rerun the same command to "
            "resume",
            file=sys.stderr,
            flush=True,
        )
        stop_children()
        if hard_exit:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(exc.exit_code)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
