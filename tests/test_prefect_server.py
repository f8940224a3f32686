"""Against a REAL ``prefect server start`` (started by the test): a served inbox deployment on an
interval schedule, ``trigger``, and SIGKILL-resume of a batch. All subprocesses use the scripted
test backend."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flowkit
import httpx
import psutil
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
PREFECT = Path(sys.executable).parent / "prefect"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(pred: Callable[[], bool], timeout: float, what: str, step: float = 0.25) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = flowkit.prefect_env(home)
    log = (home / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        try:
            return httpx.get(f"{api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait(healthy, 300, "prefect server /api/health")
        yield {**env, "PREFECT_API_URL": api, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    finally:
        _stop(proc)
        log.close()


def _docvl_env(env: dict[str, str], tmp: Path, **extra: str) -> dict[str, str]:
    return {
        **env,
        "DOCVL_BACKEND": "scripted",
        "DOCVL_CACHE_DIR": str(tmp / "cache"),
        "DOCVL_DPI": "36",
        "DOCVL_MIN_PIXELS": "1024",
        "DOCVL_MAX_PIXELS": "65536",
        "DOCVL_TEST_CALL_LOG": str(tmp / "calls.log"),
        **extra,
    }


def _calls(tmp: Path) -> list[str]:
    log = tmp / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_served_inbox_delivers_once_and_trigger_works(
    server: dict[str, str], tmp_path: Path
) -> None:
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    env = _docvl_env(server, tmp_path)
    serve_log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "docvl.flows.inbox",
            "--inbox",
            str(inbox),
            "--outbox",
            str(outbox),
            "--interval",
            "4",
            "--name",
            "test-inbox",
            "--backend-factory",
            "flowkit:scripted_backend",
        ],
        cwd=REPO,
        env=env,
        stdout=serve_log,
        stderr=subprocess.STDOUT,
    )
    try:
        for pdf in flowkit.make_pdfs(
            tmp_path / "staging", 3
        ):  # drop atomically, as uploaders should
            os.replace(pdf, inbox / pdf.name)
        _wait(lambda: len(list(outbox.glob("*.json"))) == 3, 240, "3 results in the outbox", step=1)
        results = [json.loads(p.read_text()) for p in outbox.glob("*.json")]
        assert sorted(r["status"] for r in results) == ["ok"] * 3
        assert len(_calls(tmp_path)) == 3

        def manifest_rows() -> int:  # a run writes its manifest after its deliveries
            return sum(len(p.read_text().splitlines()) for p in outbox.glob("manifests/*.jsonl"))

        _wait(lambda: manifest_rows() == 3, 60, "the runs' manifests", step=0.5)
        manifests = list((outbox / "manifests").glob("*.jsonl"))

        # Later scheduled runs see nothing new. trigger --wait runs one more and waits for its final
        # state.
        trig = subprocess.run(
            [
                sys.executable,
                "-c",
                "from docvl.flows.trigger import trigger; "
                "raise SystemExit(trigger('docvl-inbox/test-inbox', {'min_age_s': '0'}, "
                "wait=True))",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert trig.returncode == 0, trig.stdout + trig.stderr
        assert "Completed" in trig.stdout
        assert len(_calls(tmp_path)) == 3
        assert list((outbox / "manifests").glob("*.jsonl")) == manifests
        assert len(list(outbox.glob("*.json"))) == 3
    finally:
        _stop(serve)  # before the server: with the API gone first, serve hangs on SIGTERM
        serve_log.close()
    assert serve.returncode is not None


BATCH = textwrap.dedent("""
    import sys
    from pathlib import Path
    from docvl.flows.analyze import run_batch
    from docvl.flows.options import RunOptions
    from docvl.pipeline.settings import Settings
    paths = sorted(Path(sys.argv[1]).glob("*.pdf"))
    res = run_batch(paths, Settings(max_concurrency=1), Path(sys.argv[2]),
                    options=RunOptions(backend_factory="flowkit:scripted_backend"))
    print(sum(r.status == "ok" for r in res))
""")


def test_sigkill_mid_batch_then_rerun_recomputes_only_unfinished(
    server: dict[str, str], tmp_path: Path
) -> None:
    docs = flowkit.make_pdfs(tmp_path / "in", 6, pages=1)
    out = tmp_path / "out.jsonl"
    records = tmp_path / "cache" / "records"
    cmd = [sys.executable, "-c", BATCH, str(tmp_path / "in"), str(out)]
    slow = _docvl_env(server, tmp_path, DOCVL_TEST_DELAY_S="1.5")
    first = subprocess.Popen(
        cmd, cwd=REPO, env=slow, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    _wait(lambda: records.is_dir() and any(records.glob("*.json")), 180, "the first record")
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before = {json.loads(p.read_text())["source"]["path"] for p in records.glob("*.json")}
    assert 1 <= len(done_before) < len(docs)
    assert not out.exists()  # the JSONL is only ever written complete
    first_calls = _calls(tmp_path)

    rerun = subprocess.run(
        cmd, cwd=REPO, env=_docvl_env(server, tmp_path), capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    second = [line.split()[2] for line in _calls(tmp_path)[len(first_calls) :]]
    assert len(second) == len(set(second))  # nothing computed twice
    assert not set(second) & {
        Path(p).name for p in done_before
    }  # finished documents were not recomputed
    assert set(second) | {Path(p).name for p in done_before} >= {d.name for d in docs} - {
        line.split()[2] for line in first_calls
    }
    rows = [
        json.loads(line) for line in out.read_text().splitlines()
    ]  # every line parses: none torn
    assert [r["source"]["path"] for r in rows] == [str(d) for d in docs]
    assert len({r["source"]["sha256"] for r in rows}) == 6 and all(
        r["status"] == "ok" for r in rows
    )


@pytest.mark.slow
def test_serve_without_a_configured_server_starts_its_own(tmp_path: Path) -> None:
    """No PREFECT_API_URL: the ephemeral server runs no scheduler, so serve starts and stops a local
    one."""
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    for pdf in flowkit.make_pdfs(tmp_path / "staging", 2):
        os.replace(pdf, inbox / pdf.name)
    env = _docvl_env(
        flowkit.prefect_env(tmp_path / "home"), tmp_path, PREFECT_RUNNER_POLL_FREQUENCY="2"
    )
    assert "PREFECT_API_URL" not in env
    serve_log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "docvl.flows.inbox",
            "--inbox",
            str(inbox),
            "--outbox",
            str(outbox),
            "--interval",
            "3",
            "--backend-factory",
            "flowkit:scripted_backend",
        ],
        cwd=REPO,
        env=env,
        stdout=serve_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait(lambda: len(list(outbox.glob("*.json"))) == 2, 240, "2 results in the outbox", step=1)
        assert sorted(json.loads(p.read_text())["status"] for p in outbox.glob("*.json")) == [
            "ok",
            "ok",
        ]
    finally:
        _stop(serve, timeout=60)
        serve_log.close()
    log = (tmp_path / "serve.log").read_text()
    match = re.search(r"started a local Prefect server at (\S+)", log)
    assert match is not None, log[-2000:]
    assert serve.returncode is not None
    with pytest.raises(httpx.HTTPError):  # the local server stopped with it
        httpx.get(f"{match.group(1)}/health", timeout=2)


def test_repeated_random_sigkills_then_a_rerun_give_a_complete_output(
    server: dict[str, str], tmp_path: Path
) -> None:
    """SIGKILL at random points (seeded), three times, then a rerun: every record parses, no
    document recorded before a kill is computed again, and the JSONL has one whole line per
    input."""
    rng = random.Random(9)
    docs = flowkit.make_pdfs(tmp_path / "in", 6, pages=1)
    out = tmp_path / "out.jsonl"
    records = tmp_path / "cache" / "records"
    cmd = [sys.executable, "-c", BATCH, str(tmp_path / "in"), str(out)]
    slow = _docvl_env(server, tmp_path, DOCVL_TEST_DELAY_S="0.7")
    recorded: set[str] = set()
    for _ in range(3):
        before = len(_calls(tmp_path))
        proc = subprocess.Popen(cmd, cwd=REPO, env=slow, stdout=subprocess.DEVNULL)
        started = lambda: len(_calls(tmp_path)) > before or proc.poll() is not None  # noqa: B023, E731
        _wait(started, 180, "a model call")
        time.sleep(rng.uniform(0.0, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        again = {line.split()[2] for line in _calls(tmp_path)[before:]}
        assert not again & recorded  # a recorded document is never computed again
        for path in records.glob("*.json"):
            recorded.add(Path(json.loads(path.read_text())["source"]["path"]).name)  # none torn
    rerun = subprocess.run(
        cmd, cwd=REPO, env=_docvl_env(server, tmp_path), capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["source"]["path"] for r in rows] == [str(d) for d in docs]
    assert all(r["status"] == "ok" for r in rows)


def test_two_concurrent_runs_never_compute_a_document_twice(
    server: dict[str, str], tmp_path: Path
) -> None:
    docs = flowkit.make_pdfs(tmp_path / "in", 4, pages=1)
    env = _docvl_env(server, tmp_path, DOCVL_TEST_DELAY_S="1")
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", BATCH, str(tmp_path / "in"), str(tmp_path / f"out{i}.jsonl")],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    for run in runs:
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0, output[-3000:]
    computed = [line.split()[2] for line in _calls(tmp_path)]
    assert sorted(computed) == sorted(d.name for d in docs)  # each document once, by either run
    for i in range(2):
        rows = [json.loads(x) for x in (tmp_path / f"out{i}.jsonl").read_text().splitlines()]
        assert [r["source"]["path"] for r in rows] == [str(d) for d in docs]
        assert all(r["status"] == "ok" for r in rows)
    assert not list((tmp_path / "cache" / "locks").glob("*.lock"))


SCRIPTED = ("--backend-factory", "flowkit:scripted_backend")
PARAMS = ("--param", "min_age_s=0", "--param", "settings.max_attempts=1")


def _api(env: dict[str, str], path: str, body: dict[str, object]) -> list[dict[str, Any]]:
    response = httpx.post(f"{env['PREFECT_API_URL']}/{path}", json=body, timeout=30)
    response.raise_for_status()
    rows: list[dict[str, Any]] = response.json()
    return rows


def _flow_run_processes(pid: int) -> list[psutil.Process]:
    """The runner's flow-run subprocesses (``python -m prefect.engine``), exited ones not yet
    reaped included."""
    found = []
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.Error):
            # An exited child the runner has not reaped yet is still tracked by the runner.
            if child.status() == psutil.STATUS_ZOMBIE or "prefect.engine" in child.cmdline():
                found.append(child)
    return found


def test_served_runs_tell_the_truth(server: dict[str, str], tmp_path: Path) -> None:
    """Issue 11 against a real server: a served run's logs and artifacts are visible through the
    API, task runs carry the document's name, a run with a failed document ends Failed, and
    ``docvl trigger --wait`` exits 1 on it while a partial ``--param`` keeps the other settings."""
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    env = _docvl_env(server, tmp_path)
    serve_log = (tmp_path / "serve.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "docvl.flows.inbox",
        "--inbox",
        str(inbox),
        "--outbox",
        str(outbox),
    ]
    serve = subprocess.Popen(
        # Yearly: no scheduled run interferes; the test's run is the triggered one.
        [*command, "--cron", "0 0 1 1 *", "--name", "honest", *SCRIPTED],
        cwd=REPO,
        env=env,
        stdout=serve_log,
        stderr=subprocess.STDOUT,
    )
    deployment = f"{env['PREFECT_API_URL']}/deployments/name/docvl-inbox/honest"
    try:
        _wait(lambda: httpx.get(deployment, timeout=5).status_code == 200, 240, "the deployment")
        [good] = flowkit.make_pdfs(tmp_path / "staging", 1)
        os.replace(good, inbox / "good-invoice.pdf")
        (inbox / "empty-scan.pdf").write_bytes(b"")  # a final failure: empty_file
        trig = subprocess.run(
            [sys.executable, "-m", "docvl.cli", "trigger", "docvl-inbox/honest", "--wait", *PARAMS],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert trig.returncode == 1, trig.stdout + trig.stderr
        match = re.search(r"/(?:runs/flow-run|flow_runs)/([0-9a-f-]{36})", trig.stdout)
        assert match is not None, trig.stdout
        run_id = match.group(1)
        # The run is final when trigger returns, so its state is read now. Its subprocess may
        # still be draining logs and events, and a runner stopped while it still tracks the run
        # relabels the finished run Cancelled: Prefect 3.9's Runner.astop -> cancel_all forces
        # that state, and the runner unregisters a run only some time after its process exits.
        # Waiting for the process keeps its logs; the state asserted is the one the run left.
        [run] = _api(server, "flow_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
        _wait(lambda: not _flow_run_processes(serve.pid), 120, "the run's process to exit")
    finally:
        _stop(serve)
        serve_log.close()
    assert "Failed (picked 2, delivered 2, failed 1, retry 0)" in trig.stdout, trig.stdout
    assert run["state_type"] == "FAILED", run["state"]
    settings = run["parameters"]["settings"]
    assert settings["max_attempts"] == 1  # the partial --param
    assert settings["dpi"] == 36 and settings["max_pixels"] == 65536  # the deployment's, kept
    names = [
        t["name"]
        for t in _api(server, "task_runs/filter", {"task_runs": {}})
        if t["flow_run_id"] == run_id
    ]
    assert any("good-invoice.pdf" in n for n in names) and any("window" in n for n in names), names

    def logs() -> list[str]:
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}}
        return [row["message"] for row in _api(server, "logs/filter", body)]

    _wait(lambda: any("delivered good-invoice.pdf" in m for m in logs()), 60, "the run's logs")
    text = "\n".join(logs())
    assert "picked up empty-scan.pdf" in text and "empty-scan.pdf failed" in text
    body = {"artifacts": {"flow_run_id": {"any_": [run_id]}}}
    artifacts = {a["key"]: a for a in _api(server, "artifacts/filter", body)}
    assert "docvl-batch" in artifacts
    markdown = [a["data"] for a in artifacts.values() if a["type"] == "markdown"]
    assert any("good-invoice.pdf" in str(m) for m in markdown)
