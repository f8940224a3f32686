"""The run's memory budget (docvl.flows.memory, issue 9): the setting, the guard that fails the
documents in progress when the process tree goes over it, and the memory bombs of the issue ending
as typed failures while the rest of the batch is ok."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import craftkit as ck
import flowkit
import psutil
import pytest

import docvl.flows  # noqa: F401  (offline env defaults before prefect is imported)
from docvl.flows.analyze import run_batch
from docvl.flows.memory import (
    ABANDONED,
    MIB,
    MemoryGuard,
    check_memory,
    is_helper,
    kill_helpers,
    model_bytes,
    tree_rss,
)
from docvl.flows.options import RunOptions
from docvl.flows.rerun import memory_key
from docvl.flows.store import RecordStore
from docvl.pipeline.errors import MemoryBudgetExceeded, WorkAbandoned
from docvl.pipeline.model.base import Generation, GenerationRequest
from docvl.pipeline.plan.prompt import Part
from docvl.pipeline.policy import FAILURE_POLICY, Policy
from docvl.pipeline.settings import MEMORY_BYTES_PER_PIXEL, Settings

OPTIONS = RunOptions(backend_factory="flowkit:scripted_backend", artifacts=False)
flow_tests = pytest.mark.usefixtures("prefect_harness", "flowkit_reset")


# --- the setting ---------------------------------------------------------------------------------


def test_budget_setting_default_environment_and_what_follows_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().memory_budget_mb == 4096
    assert FAILURE_POLICY[MemoryBudgetExceeded.code] is Policy.FINAL
    monkeypatch.setenv("DOCVL_MEMORY_BUDGET_MB", "1024")
    s = Settings(slide_memory_mb=2048, max_page_pixels=150_000_000)
    assert s.memory_budget_mb == 1024
    assert s.slide_memory_limit_mb() == 1024  # LibreOffice never gets more than the run
    assert s.page_pixel_cap() == 1024 * MIB // MEMORY_BYTES_PER_PIXEL
    assert s.unpacked_cap() == 128 * MIB  # an eighth of the budget (max_unpacked_bytes: 1 GiB)
    off = s.model_copy(update={"memory_budget_mb": 0})
    assert (off.slide_memory_limit_mb(), off.page_pixel_cap()) == (2048, 150_000_000)
    monkeypatch.delenv("DOCVL_MEMORY_BUDGET_MB")
    assert Settings().page_pixel_cap() == 150_000_000  # the default budget keeps the default cap
    assert s.fingerprint() == off.fingerprint()  # the budget changes no result


def test_a_lower_budget_lowers_the_deck_and_pixel_caps(tmp_path: Path) -> None:
    """Bombs under the default caps are refused before decoding under a small budget."""
    from docvl.pipeline.errors import DocvlError
    from docvl.pipeline.ingest.load import load_document

    deck = ck.zip_bomb_deck(tmp_path / "bomb.pptx", unpacked_mb=64)  # under the 1 GiB default
    png = ck.png_declaring(tmp_path / "100mp.png", 10_000, 10_000)  # under the 150 MP default
    small = Settings(memory_budget_mb=256)  # 32 MiB unpacked, 33.5 MP
    for path, code in ((deck, "package_too_large"), (png, "too_many_pixels")):
        with pytest.raises(DocvlError) as info:
            load_document(path, small)
        assert info.value.code == code


# --- the guard, with an injected sampler ---------------------------------------------------------


class Meter:
    """A fake process-tree sampler: ``used`` bytes; counts the helper kills."""

    def __init__(self) -> None:
        self.used = 100 * MIB
        self.kills = 0

    def sample(self) -> int:
        return self.used

    def kill(self) -> int:
        self.kills += 1
        return 0


def test_under_the_budget_the_work_runs_to_its_result() -> None:
    meter = Meter()
    with MemoryGuard(1024, sample=meter.sample, kill=meter.kill, interval_s=0.01) as guard:
        assert guard.run("doc", lambda: 42) == 42
        assert not guard.check()
    assert meter.kills == 0 and guard.trips == 0 and guard.peak == 100 * MIB
    assert MemoryGuard(0).run("doc", lambda: "no budget") == "no budget"


def test_over_the_budget_the_document_in_progress_fails_at_once() -> None:
    meter = Meter()
    release = threading.Event()
    stopped: list[str] = []

    def bomb() -> str:
        meter.used = 2048 * MIB  # the document's work blows the budget, then keeps going
        release.wait(10)
        try:
            check_memory()  # its next model call
        except WorkAbandoned as exc:
            stopped.append(exc.code)
        return "finished"

    with MemoryGuard(1024, sample=meter.sample, kill=meter.kill, interval_s=0.01) as guard:
        start = time.monotonic()
        with pytest.raises(MemoryBudgetExceeded) as info:
            guard.run("bomb.pdf", bomb)
        assert time.monotonic() - start < 5
        assert info.value.code == "memory_budget"
        assert "1,024 MiB" in info.value.message and "2,048 MiB" in info.value.message
        assert meter.kills >= 1 and guard.trips >= 1
        # A new document waits while memory is over and the abandoned work still runs ...
        started = threading.Event()
        later = threading.Thread(target=lambda: guard.run("next", started.set), daemon=True)
        later.start()
        assert not started.wait(0.3)
        release.set()  # ... and goes once the bomb's work has stopped (at its next model call)
        assert started.wait(5)
        later.join(5)
    assert stopped == ["work_abandoned"]
    assert ABANDONED.get() is None  # the flag lives in the document's own context only


def test_with_several_documents_in_progress_only_the_bomb_fails() -> None:
    """Both are in progress when the budget blows; each is run again alone: only the bomb fails."""
    meter = Meter()
    both = threading.Barrier(2, timeout=10)
    runs = {"bomb": 0, "fine": 0}

    def work(name: str) -> str:
        runs[name] += 1
        if runs[name] == 1:
            both.wait()  # in progress together
        if name == "bomb":  # holds 2 GiB until its work is abandoned, then frees it
            meter.used = 2048 * MIB
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    check_memory()
                except WorkAbandoned:
                    break
                time.sleep(0.01)
            meter.used = 100 * MIB
        else:
            time.sleep(3 if runs[name] == 1 else 0.1)  # in progress when the budget blows
        return name

    outcome: dict[str, str] = {}

    def drive(name: str) -> None:
        try:
            outcome[name] = guard.run(name, lambda: work(name))
        except MemoryBudgetExceeded as exc:
            outcome[name] = exc.code

    with MemoryGuard(1024, sample=meter.sample, kill=meter.kill, interval_s=0.01) as guard:
        threads = [threading.Thread(target=drive, args=(n,)) for n in ("bomb", "fine")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    assert outcome == {"bomb": "memory_budget", "fine": "fine"}
    assert runs == {"bomb": 2, "fine": 2}


def test_model_weights_on_the_cpu_are_not_counted() -> None:
    torch = pytest.importorskip("torch")

    class Backend:
        model = torch.nn.Linear(256, 256)  # 65,792 float32 parameters

    class Proxy:
        def __init__(self) -> None:
            self._inner = Backend()

    assert model_bytes(Proxy()) == 65_792 * 4
    assert model_bytes(object()) == 0
    meter = Meter()
    guard = MemoryGuard(1, sample=meter.sample, exempt=lambda: 100 * MIB - 1)
    assert guard.counted() == 1 and not guard.check()


# --- the real process tree ------------------------------------------------------------------------


def _child(mib: int, mark: str = "") -> subprocess.Popen[bytes]:
    """A child holding ``mib`` MiB; ``mark`` goes into its command line (a comment)."""
    code = f"import time; x = bytearray({mib} << 20); print(1, flush=True); time.sleep(60) # {mark}"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()
    return proc


def test_tree_rss_counts_children_and_only_helpers_are_killed() -> None:
    before = tree_rss()
    hog = _child(300)
    helper = _child(1, "from multiprocessing.spawn import spawn_main")  # a render worker's
    try:
        assert tree_rss() - before > 250 * MIB
        assert is_helper(psutil.Process(helper.pid)) and not is_helper(psutil.Process(hog.pid))
        assert kill_helpers() >= 1
        assert helper.wait(10) != 0
        assert hog.poll() is None
    finally:
        for proc in (hog, helper):
            proc.kill()
            proc.wait()


# --- the issue's bombs in a batch -----------------------------------------------------------------


def _bombs(tmp: Path) -> dict[Path, str]:
    """The issue's three bombs, scaled to run in seconds: the code each must end with."""
    pixels = [ck.png_declaring(tmp / f"mp169-{i}.png", 13_000, 13_000) for i in range(4)]
    return {
        ck.blank_pdf(tmp / "blank-10000.pdf", 10_000): "too_many_pages",
        **dict.fromkeys(pixels, "too_many_pixels"),
        ck.zip_bomb_deck(tmp / "zip-bomb.pptx", unpacked_mb=64): "package_too_large",
    }


@flow_tests
def test_the_issues_memory_bombs_fail_typed_and_the_batch_goes_on(tmp_path: Path) -> None:
    bombs = _bombs(tmp_path)
    assert all(p.stat().st_size < 2_000_000 for p in bombs)
    good = flowkit.make_pdfs(tmp_path / "in", 2, pages=2)
    paths = [good[0], *bombs, good[1]]
    settings = flowkit.test_settings(
        tmp_path / "cache", memory_budget_mb=4096, max_unpacked_bytes=32 * MIB
    )
    start = time.monotonic()
    results = run_batch(paths, settings, tmp_path / "out.jsonl", options=OPTIONS)
    assert time.monotonic() - start < 240
    codes = {r.source.path: r.errors[0].code for r in results if r.errors}
    assert codes == {str(p): code for p, code in bombs.items()}
    assert results[0].status == results[-1].status == "ok"


def hog_backend(settings: Settings) -> HogBackend:
    return HogBackend(settings.model)


class HogBackend(flowkit.ConcurrentScripted):
    """Scripted replies; on ``hog.pdf`` it first waits for the other documents, then holds
    ``DOCVL_TEST_HOG_MB`` MiB for up to 20 s (the memory bomb inside a document's work)."""

    def generate(
        self, content: Sequence[Part], requests: Sequence[GenerationRequest]
    ) -> list[Generation]:
        import os

        text = "".join(getattr(p, "text", "") for p in content)
        if "hog.pdf" in text:
            deadline = time.monotonic() + 30
            while len(flowkit.CALLS) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.5)  # the other documents' records are written
            held = [bytearray(64 * MIB) for _ in range(int(os.environ["DOCVL_TEST_HOG_MB"]) // 64)]
            for _ in range(200):
                time.sleep(0.1)
                check_memory()
            del held
        return super().generate(content, requests)


@flow_tests
def test_a_document_over_the_budget_fails_typed_and_final_under_that_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = tree_rss() // MIB + 600  # what this test process (and Prefect) hold, plus 600 MiB
    monkeypatch.setenv("DOCVL_TEST_HOG_MB", "1024")
    good = flowkit.make_pdfs(tmp_path / "in", 2, pages=1)
    hog = flowkit.make_pdf(tmp_path / "in" / "hog.pdf", pages=1)
    settings = flowkit.test_settings(tmp_path / "cache", memory_budget_mb=budget)
    options = RunOptions(backend_factory="test_memory:hog_backend", artifacts=False)
    start = time.monotonic()
    results = run_batch([good[0], hog, good[1]], settings, None, options=options)
    assert time.monotonic() - start < 60
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert results[1].errors[0].code == "memory_budget"
    key = flowkit.record_key(hog, settings)
    assert key is not None
    store = RecordStore.for_settings(settings)
    assert store.get(key) is None and store.get(memory_key(key, budget)) is not None
    # No budget: the document is computed (the failure stuck to that budget only).
    monkeypatch.setenv("DOCVL_TEST_HOG_MB", "64")
    unbounded = settings.model_copy(update={"memory_budget_mb": 0})
    [again] = run_batch([hog], unbounded, None, options=options)
    assert again.status == "ok"
