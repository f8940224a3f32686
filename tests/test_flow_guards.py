"""Per-document guards of the flows (docvl.flows.guard, docvl.flows.locks): isolation, the early
stop on a configuration failure, the per-document time budget and per-document locks."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import flowkit
import pytest

import docvl.flows  # noqa: F401  (offline env defaults before prefect is imported)
from docvl.flows.analyze import run_batch
from docvl.flows.guard import DEADLINE, BatchStop, call_with_budget, check_deadline
from docvl.flows.locks import DocumentLocks
from docvl.flows.options import RunOptions
from docvl.flows.rerun import timeout_key
from docvl.flows.store import RecordStore
from docvl.pipeline.engine import Engine, Prepared, Unit
from docvl.pipeline.errors import DocumentTimeout, WorkAbandoned
from docvl.pipeline.policy import is_final, policy_of, stops_batch

OPTIONS = RunOptions(backend_factory="flowkit:scripted_backend", artifacts=False)
flow_tests = pytest.mark.usefixtures("prefect_harness", "flowkit_reset")


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- unit level ----------------------------------------------------------------------------------


def test_call_with_budget_returns_or_times_out() -> None:
    assert call_with_budget(lambda: 7, None) == 7
    assert call_with_budget(lambda: 8, 5.0) == 8
    with pytest.raises(ValueError, match="boom"):
        call_with_budget(lambda: (_ for _ in ()).throw(ValueError("boom")), 5.0)
    seen: list[BaseException] = []

    def slow() -> int:
        time.sleep(0.6)
        try:
            check_deadline()  # what LimitedBackend does before each model call
        except WorkAbandoned as exc:
            seen.append(exc)
        return 1

    with pytest.raises(DocumentTimeout, match=r"0\.2 s"):
        call_with_budget(slow, 0.2)
    time.sleep(0.8)
    assert len(seen) == 1  # the abandoned work was told to stop at its next model call
    assert DEADLINE.get() is None  # the caller's context has no deadline


def test_policies_of_the_new_codes() -> None:
    assert is_final([DocumentTimeout("x").record()])
    assert not is_final([WorkAbandoned("x").record()])
    assert policy_of("work_abandoned").value == "retryable"
    assert stops_batch("backend_unavailable") and not stops_batch("backend_error")


def test_batch_stop_announces_once() -> None:
    lines: list[str] = []
    stop = BatchStop(lines.append)
    assert stop.skip() is None
    from docvl.pipeline.errors import BackendUnavailable
    from docvl.pipeline.result import ModelInfo, ResultEnvelope, Source

    env = ResultEnvelope(
        source=Source(path="a.pdf", sha256=None),
        status="failed",
        errors=[BackendUnavailable("HTTP 401: invalid api key").record()],
        model=ModelInfo(backend="openai", id="m", context_window=1),
    )
    stop.note([env])
    stop.note([env])
    skipped = stop.skip()
    assert skipped is not None and skipped.code == "backend_unavailable"
    assert "not attempted" in skipped.message and "invalid api key" in skipped.message
    assert len(lines) == 1 and "invalid api key" in lines[0]


def test_lock_waits_for_a_live_owner_and_takes_over_a_dead_one(tmp_path: Path) -> None:
    locks = DocumentLocks(tmp_path, wait_s=30, poll_s=0.05)
    done = threading.Event()
    with locks.hold("k", done.is_set) as mine:
        assert mine and locks.path("k").exists()
        results: list[bool] = []

        def second() -> None:
            with locks.hold("k", done.is_set) as theirs:
                results.append(theirs)

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        assert results == []  # waiting: the owner (this live pid) holds the lock
        done.set()  # the owner's record appeared
        t.join(5)
        assert results == [False]  # reused, not recomputed
    assert not locks.path("k").exists()
    # A lock left by a process that is gone is stale: taken over at once.
    locks.path("d").write_text(json.dumps({"pid": 2**22 + 12345, "host": os.uname()[1], "time": 0}))
    with locks.hold("d", lambda: False) as mine:
        assert mine
    assert not locks.path("d").exists()


# --- flows --------------------------------------------------------------------------------------


@flow_tests
def test_an_exception_in_one_document_becomes_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = flowkit.make_pdfs(tmp_path / "in", 3)
    real = Engine.prepare

    def flaky(engine: Engine, unit: Unit) -> Prepared:
        if unit.paths[0].name == "doc001.pdf":
            raise KeyError("a loader bug")
        return real(engine, unit)

    monkeypatch.setattr(Engine, "prepare", flaky)
    out = tmp_path / "out.jsonl"
    results = run_batch(paths, flowkit.test_settings(tmp_path / "cache"), out, options=OPTIONS)
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    [err] = results[1].errors
    assert err.code == "internal_error"
    assert "KeyError" in err.message and "a loader bug" in err.message
    assert len(_lines(out)) == 3


@flow_tests
def test_a_configuration_failure_stops_the_batch_and_is_never_cached(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    paths = flowkit.make_pdfs(tmp_path / "in", 5, pages=1)
    options = RunOptions(backend_factory="flowkit:configured_backend", artifacts=False)
    wrong = flowkit.test_settings(
        tmp_path / "cache", base_url="http://wrong.invalid/v1", max_concurrency=1
    )
    out = tmp_path / "out.jsonl"
    results = run_batch(paths, wrong, out, options=options)
    assert [r.status for r in results] == ["failed"] * 5
    assert all(r.errors[0].code == "backend_unavailable" for r in results)
    skipped = [r for r in results if "not attempted" in r.errors[0].message]
    assert len(skipped) >= 3  # two documents at once (max_concurrency 1): at most 2 tried
    assert len(_lines(out)) == 5
    err = capfd.readouterr().err
    assert err.count("stopping the batch early") == 1 and "wrong.invalid" in err
    # The right URL: every document is computed, nothing of the failure was cached.
    right = wrong.model_copy(update={"base_url": flowkit.GOOD_URL})
    results = run_batch(paths, right, out, options=options)
    assert [r.status for r in results] == ["ok"] * 5
    assert len(flowkit.CALLS) == 5


@flow_tests
def test_a_document_over_its_time_budget_is_recorded_and_the_batch_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCVL_TEST_SLOW_S", "12")
    in_dir = tmp_path / "in"
    fast = flowkit.make_pdfs(in_dir, 2, pages=1)
    slow = flowkit.make_pdf(in_dir / "slow.pdf", pages=1)
    settings = flowkit.test_settings(tmp_path / "cache", document_timeout_s=8)
    options = RunOptions(backend_factory="flowkit:slow_on_some_backend", artifacts=False)
    out = tmp_path / "out.jsonl"
    results = run_batch([fast[0], slow, fast[1]], settings, out, options=options)
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert results[1].errors[0].code == "document_timeout"
    assert len(_lines(out)) == 3
    key = flowkit.record_key(slow, settings)
    assert key is not None
    store = RecordStore.for_settings(settings)
    assert store.get(key) is None and store.get(timeout_key(key, 8)) is not None
    # The same budget: the timeout is final, reused from the record store.
    again = run_batch([slow], settings, out, options=options)
    assert again[0].errors[0].code == "document_timeout"
    # No budget: the document is computed (the timeout did not stick to it).
    monkeypatch.setenv("DOCVL_TEST_SLOW_S", "0.1")
    unbounded = settings.model_copy(update={"document_timeout_s": None})
    [res] = run_batch([slow], unbounded, out, options=options)
    assert res.status == "ok"


def test_the_server_output_is_drained_so_it_never_blocks() -> None:
    """A child writing far more than a pipe holds (64 KiB) runs to its end while a drain thread
    reads it (docvl.flows.server reads its Prefect server's output this way); the last lines are
    kept."""
    import collections
    import subprocess
    import sys

    from docvl.flows.server import _drain

    script = "import sys\nfor i in range(20000): print('x' * 60, i)\nsys.stdout.flush()"
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    tail: collections.deque[str] = collections.deque(maxlen=3)
    reader = threading.Thread(target=_drain, args=(proc.stdout, tail), daemon=True)
    reader.start()
    assert proc.wait(timeout=60) == 0
    reader.join(10)
    assert list(tail)[-1].endswith(" 19999")
