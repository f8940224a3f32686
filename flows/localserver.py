"""One local Prefect API server reused across ``docvl run`` invocations (``prefect_server="local"``,
``DOCVL_PREFECT_SERVER=local``).

Without ``PREFECT_API_URL`` every new process starts Prefect's *ephemeral* server: a subprocess that
imports the whole server and opens SQLite before the first flow can run, and the client process
imports ``prefect.server`` too (issue 12: 9.2 s for a trivial flow in a new process vs 2.6 s with a
running server). Here the first run starts ``prefect server start --host 127.0.0.1 --port N`` as a
detached process (its own session; it outlives the run), records ``{"url", "pid"}`` in
``<cache_dir>/prefect-server.json`` and points this process at it; later runs find it healthy and
reuse it. A lock file serialises concurrent starters. :func:`stop_local_server` ends it.

Whatever goes wrong while starting (no port, the server dies, no health within
``STARTUP_TIMEOUT_S``) falls back to the ephemeral server with a warning: never a failed run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from docvl.flows.server import free_port, healthy
from docvl.pipeline.settings import Settings

log = logging.getLogger(__name__)

STATE_FILE = "prefect-server.json"
LOG_FILE = "prefect-server.log"
#: A busy 2-core machine needs about 8 s with a new database (prefect-and-rendering notes); allow
#: for much worse before falling back.
STARTUP_TIMEOUT_S = 120.0


def _configured_api() -> bool:
    """PREFECT_API_URL set in the environment or in the active Prefect profile."""
    from prefect.settings import PREFECT_API_URL

    return bool(os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value())


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("url"), str) else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def start_command(port: int) -> list[str]:
    host = ["--host", "127.0.0.1", "--port", str(port)]
    return [sys.executable, "-m", "prefect", "server", "start", *host]


def local_api_url(
    settings: Settings, while_starting: Callable[[], object] | None = None
) -> str | None:
    """The URL of the reused local server, starting it when needed; None means "use the ephemeral
    server" (not configured, PREFECT_API_URL already set, or the server could not start).
    ``while_starting`` runs on this thread while a new server boots (e.g. heavy imports)."""
    if settings.prefect_server != "local" or _configured_api():
        return None
    state_path = settings.cache_dir / STATE_FILE
    state = _read_state(state_path)
    if state and healthy(state["url"]):
        return str(state["url"])
    with _locked(settings.cache_dir / (STATE_FILE + ".lock")):
        state = _read_state(state_path)  # another run may have started one meanwhile
        if state and healthy(state["url"]):
            return str(state["url"])
        port = free_port()
        url = f"http://127.0.0.1:{port}/api"
        with (settings.cache_dir / LOG_FILE).open("ab") as logfile:
            proc = subprocess.Popen(
                start_command(port),
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if while_starting is not None:
            while_starting()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if healthy(url):
                state_path.write_text(json.dumps({"url": url, "pid": proc.pid}))
                return url
            time.sleep(0.2)
        if proc.poll() is None:
            proc.terminate()
        log.warning(
            "the local Prefect server did not start (see %s); using the ephemeral server",
            settings.cache_dir / LOG_FILE,
        )
        return None


def stop_local_server(settings: Settings) -> bool:
    """Stop the server :func:`local_api_url` started for ``settings.cache_dir``; True if one ran."""
    state_path = settings.cache_dir / STATE_FILE
    state = _read_state(state_path)
    state_path.unlink(missing_ok=True)
    if not state or not isinstance(state.get("pid"), int) or not healthy(state["url"]):
        return False
    try:
        os.killpg(state["pid"], signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True
