"""A local Prefect API server for ``docvl serve`` and ``docvl run`` when none is configured.

Schedules need Prefect's scheduler, which the ephemeral server does not run ("Cannot schedule flows
on an ephemeral server"). So with no ``PREFECT_API_URL``, ``docvl serve`` starts
``prefect server start`` on 127.0.0.1 (a free port; the usual ``PREFECT_HOME`` database, so
deployments and history persist) for as long as it serves, and stops it after the runner (a runner
whose API is gone hangs on SIGTERM). ``docvl run`` does the same instead of Prefect's ephemeral
server, because Prefect starts that one in docvl's own process group, where a Ctrl-C in the
terminal kills it before docvl can finish cleanly.

The server lives in its own session (so its own process group: a terminal's Ctrl-C does not reach
it), gets SIGKILL from the kernel if docvl dies, even by SIGKILL (``PR_SET_PDEATHSIG``; a SIGTERM
was not always enough for an orphaned server to exit on a loaded machine), and its
output is read all the time by a thread (a full pipe would block it); the last lines are kept for
the error message when it fails to start. :data:`RUNNING` lists the servers this process runs, so a
signal handler can stop them (:func:`stop_all`).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

from docvl.pipeline.errors import BackendUnavailable

#: On a loaded 2-core machine a fresh database took about 100 s to migrate.
STARTUP_TIMEOUT_S = 240.0
LEAN = ["--no-ui", "--no-scheduler", "--no-late-runs"]
#: A batch server also skips registering Prefect's block types in a new database (about 3 s of a
#: cold start on a busy 2-core machine): ``docvl run`` saves no blocks, and a full server started
#: later on the same PREFECT_HOME registers them (Prefect memoizes that step per home).
LEAN_ENV = {"PREFECT_API_BLOCKS_REGISTER_ON_START": "false"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(url: str, timeout: float = 2.0) -> bool:
    """True when the Prefect API at ``url`` (ending in ``/api``) answers its health check."""
    import httpx  # here: ``docvl run`` imports this module on its light rerun path

    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


#: The local servers this process has started and not yet stopped.
RUNNING: list[subprocess.Popen[bytes]] = []
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _drain(stream: IO[bytes], tail: collections.deque[str]) -> None:
    """Read the server's output to the end (it never blocks on a full pipe); keep the last lines."""
    with contextlib.suppress(OSError, ValueError):
        for line in iter(stream.readline, b""):
            tail.append(line.decode(errors="replace").rstrip())


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after ``timeout_s``. A server
    stopped already is left alone (its process group id may belong to another process now)."""
    if proc.returncode is not None and proc not in RUNNING:
        return
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers of the group that outlived their leader
    with contextlib.suppress(ValueError):
        RUNNING.remove(proc)


def stop_all() -> None:
    for proc in list(RUNNING):
        stop(proc, timeout_s=3.0)


@dataclasses.dataclass
class Starting:
    """A local server process started by :func:`start_server`, not yet known to answer."""

    proc: subprocess.Popen[bytes]
    url: str
    #: The last lines of its output (for the error message when it fails to start).
    tail: collections.deque[str]


def configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment, or from Prefect's settings when Prefect is imported
    already; None otherwise. Cheap (never imports Prefect): a profile that sets the URL is only
    seen once Prefect is loaded, and :func:`api_server` then stops a server started early."""
    if url := os.environ.get("PREFECT_API_URL"):
        return url
    if "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_URL

        return str(PREFECT_API_URL.value() or "") or None
    return None


def start_server(batch: bool = False) -> Starting:
    """Start ``prefect server start`` on a free 127.0.0.1 port and return at once.

    Its own session (process group), SIGKILL when this thread's process dies (PDEATHSIG: call it
    from the main thread), its output drained by a thread, and listed in :data:`RUNNING` (so a
    signal handler stops it). ``batch``: no UI, scheduler or late-runs service (see
    :func:`api_server`). Pair it with :func:`stop`, or hand it to :func:`api_server`.
    """
    url = f"http://127.0.0.1:{free_port()}/api"
    port = url.rsplit(":", 1)[1].split("/")[0]
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*command, "--port", port, *(LEAN if batch else [])],
        env=(os.environ | LEAN_ENV) if batch else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    RUNNING.append(proc)
    tail: collections.deque[str] = collections.deque(maxlen=20)
    assert proc.stdout is not None
    threading.Thread(
        target=_drain, args=(proc.stdout, tail), name="docvl-prefect-server-output", daemon=True
    ).start()
    return Starting(proc, url, tail)


def wait_healthy(server: Starting, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Return once the server answers its health check; BackendUnavailable when it exits or
    ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while not healthy(server.url):
        if server.proc.poll() is not None or time.monotonic() > deadline:
            exited = server.proc.poll() is not None
            detail = " | ".join(server.tail)[-500:] if exited else "timed out"
            raise BackendUnavailable(
                f"could not start a local Prefect server ({detail}); "
                "start one with `prefect server start` and set PREFECT_API_URL"
            )
        time.sleep(0.2)


@contextlib.contextmanager
def api_server(
    announce: bool = True, batch: bool = False, starting: Starting | None = None
) -> Iterator[str]:
    """Yield the API URL: the configured one, or a local server started (and stopped) here.

    ``batch``: for one batch (``docvl run``): no UI, no scheduler, no late-runs service (the
    ephemeral server's footprint); else everything ``serve`` needs. ``starting``: a server
    :func:`start_server` started earlier (``docvl run`` starts it before its heavy imports, so the
    two overlap): used instead of a new one, and stopped here in every case (also when a URL turns
    out to be configured).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        if starting is not None:
            stop(starting.proc)
        yield str(configured)
        return
    server = starting or start_server(batch)
    try:
        wait_healthy(server)
        url = server.url
        if announce:
            print(
                f"docvl: started a local Prefect server at {url} "
                "(set PREFECT_API_URL to use your own)",
                file=sys.stderr,
                flush=True,
            )
        os.environ["PREFECT_API_URL"] = url  # the runner's flow-run subprocesses inherit it
        try:
            with temporary_settings(updates={PREFECT_API_URL: url}):
                yield url
        finally:
            os.environ.pop("PREFECT_API_URL", None)
    finally:
        stop(server.proc, timeout_s=30.0)


def flush_run_logs() -> None:
    """Send the queued run events and logs while the API server is still up: a per-batch server is
    stopped next, and what is flushed at exit would find it gone ("Error logging to API")."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (EventsWorker, APILogWorker):
        with contextlib.suppress(Exception):  # a view of the run: never fail a finished batch
            worker.drain_all(timeout=5)
