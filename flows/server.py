"""A local Prefect API server for ``docvl serve`` when none is configured.

Schedules need Prefect's scheduler, which the ephemeral server does not run ("Cannot schedule flows
on an ephemeral server"). So with no ``PREFECT_API_URL``, ``docvl serve`` starts
``prefect server start`` on 127.0.0.1 (a free port; the usual ``PREFECT_HOME`` database, so
deployments and history persist) for as long as it serves, and stops it after the runner (a runner
whose API is gone hangs on SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from pipeline.errors import BackendUnavailable

STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def api_server() -> Iterator[str]:
    """Yield the API URL: the configured one, or a local server started (and stopped) here."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield str(configured)
        return
    url = f"http://127.0.0.1:{free_port()}/api"
    port = url.rsplit(":", 1)[1].split("/")[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                detail = (
                    proc.stderr.read().decode(errors="replace")[-500:]
                    if proc.poll() is not None and proc.stderr
                    else "timed out"
                )
                raise BackendUnavailable(
                    f"could not start a local Prefect server ({detail}); "
                    "start one with `prefect server start` and set PREFECT_API_URL"
                )
            time.sleep(0.5)
        print(
            f"docvl: started a local Prefect server at {url} (set PREFECT_API_URL to use your own)",
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
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
