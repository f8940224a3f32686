"""The per-batch Prefect server (flows/server.py): started early and handed to ``api_server``, it
is the one used and stopped after the batch; a configured URL wins and the early server is stopped
at once; a server that exits before it answers is reported with its last output."""

from __future__ import annotations

import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

from docvl.flows import server
from docvl.pipeline.errors import BackendUnavailable


@pytest.fixture
def no_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No configured API (neither in the environment nor in Prefect's settings, which the session's
    test harness sets once an earlier test has started it) and a PREFECT_HOME of this test's own
    (the server's database)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert server.configured_api_url() is None
        yield
    assert not server.RUNNING


def test_configured_api_url_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    assert server.configured_api_url() == "http://127.0.0.1:1/api"
    monkeypatch.delenv("PREFECT_API_URL")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:2/api"}):
        assert server.configured_api_url() == "http://127.0.0.1:2/api"  # Prefect is loaded


def test_a_server_that_exits_before_answering_is_reported() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "print('no database here'); raise SystemExit(3)"],
        stdout=subprocess.PIPE,
    )
    proc.wait(30)
    assert proc.stdout is not None
    tail = deque(line.decode().strip() for line in proc.stdout)
    starting = server.Starting(proc, f"http://127.0.0.1:{server.free_port()}/api", tail)
    with pytest.raises(BackendUnavailable, match="no database here"):
        server.wait_healthy(starting, timeout_s=30)


@pytest.mark.slow
@pytest.mark.usefixtures("no_api")
def test_an_early_server_is_the_one_used_then_stopped() -> None:
    starting = server.start_server(batch=True)
    assert starting.proc in server.RUNNING
    with server.api_server(announce=False, batch=True, starting=starting) as url:
        assert url == starting.url and server.healthy(url)
        assert len(server.RUNNING) == 1
    assert starting.proc.poll() is not None and not server.healthy(url, timeout=1)
    server.stop(starting.proc)  # a second stop leaves the (reaped) process group alone


@pytest.mark.slow
@pytest.mark.usefixtures("no_api")
def test_a_configured_url_wins_and_the_early_server_is_stopped() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    starting = server.start_server(batch=True)
    with (
        temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}),
        server.api_server(announce=False, batch=True, starting=starting) as url,
    ):
        assert url == "http://127.0.0.1:9/api"
        assert starting.proc.poll() is not None and not server.RUNNING
