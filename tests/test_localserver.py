"""docvl.flows.localserver: one local Prefect server reused across runs, or the ephemeral
fallback."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from docvl.flows import localserver
from docvl.flows.localserver import STATE_FILE, healthy, local_api_url, stop_local_server
from docvl.pipeline.settings import Settings


def local(tmp_path: Path) -> Settings:
    return Settings(prefect_server="local", cache_dir=tmp_path / "cache")


def test_ephemeral_by_default(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path)
    assert settings.prefect_server == "ephemeral"
    assert local_api_url(settings) is None
    assert not (tmp_path / STATE_FILE).exists()


def test_configured_api_url_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert local_api_url(local(tmp_path)) is None


def test_setting_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCVL_PREFECT_SERVER", "local")
    assert Settings().prefect_server == "local"
    assert Settings().fingerprint() == Settings(prefect_server="ephemeral").fingerprint()


def test_server_that_dies_falls_back_to_ephemeral(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # no API configured by a Prefect profile or context of the test session either
    monkeypatch.setattr(localserver, "_configured_api", lambda: False)
    monkeypatch.setattr(
        localserver, "start_command", lambda port: [sys.executable, "-c", "raise SystemExit(3)"]
    )
    ran: list[bool] = []
    with caplog.at_level(logging.WARNING, logger="docvl.flows.localserver"):
        url = local_api_url(local(tmp_path), while_starting=lambda: ran.append(True))
    assert url is None
    assert ran == [True]
    assert "ephemeral" in caplog.text
    assert not (tmp_path / "cache" / STATE_FILE).exists()


def test_stale_state_is_not_reused_or_killed(tmp_path: Path) -> None:
    settings = local(tmp_path)
    settings.cache_dir.mkdir(parents=True)
    (settings.cache_dir / STATE_FILE).write_text('{"url": "http://127.0.0.1:9/api", "pid": 1}')
    assert not healthy("http://127.0.0.1:9/api")
    assert stop_local_server(settings) is False
    assert not (settings.cache_dir / STATE_FILE).exists()


@pytest.mark.slow
def test_real_server_started_once_then_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setattr(localserver, "_configured_api", lambda: False)
    settings = local(tmp_path)
    url = local_api_url(settings)
    try:
        assert url is not None and url.startswith("http://127.0.0.1:")
        assert healthy(url)
        assert local_api_url(settings) == url  # reused, not a second server
    finally:
        stopped = stop_local_server(settings)
    assert stopped
