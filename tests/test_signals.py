"""Signals against a real batch process (docvl.flows.signals, docvl.flows.server): SIGINT to the
terminal's process group and SIGTERM stop it within 10 s with 130/143 and one line; finished records
are kept and a rerun resumes; no process is left behind, even after SIGKILL. Subprocesses use the
scripted test backend and start their own local Prefect server (no PREFECT_API_URL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import flowkit
import psutil
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

BATCH = textwrap.dedent("""
    import sys
    from pathlib import Path
    from docvl.flows.analyze import run_batch
    from docvl.flows.options import RunOptions
    from docvl.pipeline.settings import Settings
    paths = sorted(Path(sys.argv[1]).glob("*.pdf"))
    res = run_batch(paths, Settings(max_concurrency=1), Path(sys.argv[2]), exit_on_signal=True,
                    options=RunOptions(backend_factory="flowkit:scripted_backend", artifacts=False))
    print(sum(r.status == "ok" for r in res))
""")


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = flowkit.prefect_env(tmp / "home")
    env.update(
        DOCVL_BACKEND="scripted",
        DOCVL_CACHE_DIR=str(tmp / "cache"),
        DOCVL_DPI="36",
        DOCVL_MIN_PIXELS="1024",
        DOCVL_MAX_PIXELS="65536",
        DOCVL_TEST_CALL_LOG=str(tmp / "calls.log"),
        **extra,
    )
    return env


def _ours(home: Path) -> list[psutil.Process]:
    """Live processes started for this test's PREFECT_HOME (the batch and its Prefect server)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PREFECT_HOME") == str(home) and proc.status() != "zombie":
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _start(tmp: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", BATCH, str(tmp / "in"), str(tmp / "out.jsonl")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a shell job: killpg reaches the whole job
    )


def _records(tmp: Path) -> list[Path]:
    return sorted((tmp / "cache" / "records").glob("*.json"))


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_quickly_and_a_rerun_resumes(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    docs = flowkit.make_pdfs(tmp_path / "in", 4, pages=1)
    proc = _start(tmp_path, _env(tmp_path, DOCVL_TEST_DELAY_S="4"))
    try:
        _wait(lambda: len(_records(tmp_path)) >= 1, 480, "the first record")
        time.sleep(0.5)  # the next document's model call is in flight (4 s)
        sent = time.monotonic()
        os.killpg(proc.pid, sig)  # what a terminal does on Ctrl-C: the whole foreground group
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err[-3000:]
    assert took < 10
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-3000:]
    assert signal.Signals(sig).name in err
    _wait(lambda: not _ours(tmp_path / "home"), 15, "no process of the run left")
    kept = {json.loads(p.read_text())["source"]["path"] for p in _records(tmp_path)}
    assert 1 <= len(kept) < 4 and not (tmp_path / "out.jsonl").exists()
    before = len((tmp_path / "calls.log").read_text().splitlines())

    rerun = _start(tmp_path, _env(tmp_path))
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    assert out.strip() == "4"
    again = [line.split()[2] for line in (tmp_path / "calls.log").read_text().splitlines()[before:]]
    assert not set(again) & {Path(p).name for p in kept}  # finished documents were not redone
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["source"]["path"] for r in rows] == [str(d) for d in docs]


def test_sigkill_leaves_no_prefect_server_behind(tmp_path: Path) -> None:
    flowkit.make_pdfs(tmp_path / "in", 2, pages=1)
    proc = _start(tmp_path, _env(tmp_path, DOCVL_TEST_DELAY_S="30"))
    home = tmp_path / "home"
    try:
        _wait(lambda: (tmp_path / "calls.log").exists(), 480, "a model call in flight")
        assert len(_ours(home)) >= 2  # the batch and its own Prefect server
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    try:
        _wait(lambda: not _ours(home), 60, "the local Prefect server to stop with its parent")
    except AssertionError:
        left = [(p.pid, p.ppid(), p.status(), p.cmdline()) for p in _ours(home)]
        raise AssertionError(f"left behind: {left}") from None


def _sigint_default() -> None:  # runs in the child, before exec
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_a_signal_while_docvl_run_imports_stops_its_early_server(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """``docvl run`` starts its Prefect server before importing Prefect and torch: Ctrl-C in that
    window stops the server and exits 130 with one line; SIGKILL takes the server with it
    (PDEATHSIG)."""
    flowkit.make_pdfs(tmp_path / "in", 1, pages=1)
    home = tmp_path / "home"
    command = [sys.executable, "-m", "docvl.cli", "run", str(tmp_path / "in"), "--no-progress"]
    proc = subprocess.Popen(
        [*command, "--out", str(tmp_path / "out.jsonl")],
        cwd=REPO,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # Ctrl-C as in a terminal, even when this test runs in a background job (whose children
        # inherit SIGINT ignored, so Python would never raise KeyboardInterrupt in the imports)
        preexec_fn=_sigint_default,
    )
    try:
        _wait(lambda: len(_ours(home)) >= 2, 120, "the early Prefect server")
        assert not (tmp_path / "calls.log").exists()  # no model call yet: still importing
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # the terminal's foreground group; the server has its own
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:
        # (typer maps a KeyboardInterrupt to a silent Exit(130) before docvl's handler sees it)
        assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    _wait(lambda: not _ours(home), 60, "no process of the run left")
