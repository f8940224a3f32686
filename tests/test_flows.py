"""The Prefect flows on a temporary (ephemeral) server: JSONL output, caching, retries, concurrency,
resume."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flowkit
import pytest

import docvl.flows  # noqa: F401  (offline env defaults before prefect is imported)
from docvl.flows.analyze import analyze_batch, envelopes_of, run_batch
from docvl.flows.options import RunOptions
from docvl.flows.store import RecordStore
from docvl.pipeline.engine import Engine, Prepared, Unit, windows
from docvl.pipeline.errors import ErrorRecord
from docvl.pipeline.policy import is_final
from docvl.pipeline.result import ResultEnvelope, Source
from docvl.pipeline.settings import Settings
from docvl.schemas import DocumentSummary, registry

FACTORY = "flowkit:scripted_backend"
OPTIONS = RunOptions(backend_factory=FACTORY)


pytestmark = pytest.mark.usefixtures("prefect_harness", "flowkit_reset")


def batch(paths: list[str], settings: Settings, **kwargs: Any) -> list[ResultEnvelope]:
    """The batch flow's records, however its run ended."""
    return envelopes_of(analyze_batch(paths, settings, return_state=True, **kwargs))


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_writes_jsonl_and_records(tmp_path: Path) -> None:
    paths = flowkit.make_pdfs(tmp_path / "in", 3)
    bad = tmp_path / "in" / "broken.pdf"
    bad.write_bytes(b"%PDF-1.7\nthis is not a pdf")
    settings = flowkit.test_settings(tmp_path / "cache")
    out = tmp_path / "out.jsonl"
    results = run_batch([*paths, bad], settings, out, options=OPTIONS)
    rows = _lines(out)
    assert [r["source"]["path"] for r in rows] == [str(p) for p in [*paths, bad]]  # type: ignore[index]
    assert [r.status for r in results] == ["ok", "ok", "ok", "failed"]
    assert results[3].errors[0].code != "backend_error"
    assert len(flowkit.CALLS) == 3
    store = RecordStore.for_settings(settings)
    for p in [*paths, bad]:
        assert store.get(flowkit.record_key(p, settings)) is not None
    assert not list(out.parent.glob(".out.jsonl.*"))  # no temp files left behind


def test_rerun_hits_record_store_then_window_cache(tmp_path: Path) -> None:
    paths = flowkit.make_pdfs(tmp_path / "in", 3)
    settings = flowkit.test_settings(tmp_path / "cache")
    first = run_batch(paths, settings, tmp_path / "a.jsonl", options=OPTIONS)
    assert len(flowkit.CALLS) == 3
    flowkit.reset()
    second = run_batch(paths, settings, tmp_path / "b.jsonl", options=OPTIONS)
    assert flowkit.CALLS == []
    assert [r.model_dump() for r in second] == [r.model_dump() for r in first]
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    # Without the records the Prefect window cache (persisted results) still answers every window.
    for f in RecordStore.for_settings(settings).root.glob("*.json"):
        f.unlink()
    run_batch(paths, settings, tmp_path / "c.jsonl", options=OPTIONS)
    assert flowkit.CALLS == []
    # A result-relevant setting changes the key: everything is recomputed.
    changed = flowkit.test_settings(tmp_path / "cache", include_text=False)
    run_batch(paths, changed, tmp_path / "d.jsonl", options=OPTIONS)
    assert len(flowkit.CALLS) == 3


def test_editing_a_schema_version_recomputes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = flowkit.make_pdfs(tmp_path / "in", 2)
    settings = flowkit.test_settings(tmp_path / "cache")
    run_batch(paths, settings, tmp_path / "a.jsonl", options=OPTIONS)
    assert len(flowkit.CALLS) == 2
    flowkit.reset()
    run_batch(paths, settings, tmp_path / "b.jsonl", options=OPTIONS)
    assert flowkit.CALLS == []  # records answer
    # The summary schema is edited (new version): neither records nor windows may be served.
    edited = dataclasses.replace(registry._BY_MODEL[DocumentSummary], version="1.1-test")
    monkeypatch.setitem(registry._BY_MODEL, DocumentSummary, edited)
    results = run_batch(paths, settings, tmp_path / "c.jsonl", options=OPTIONS)
    assert len(flowkit.CALLS) == 2 and all(r.status == "ok" for r in results)


def test_a_crash_is_never_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [p] = flowkit.make_pdfs(tmp_path / "in", 1)
    settings = flowkit.test_settings(tmp_path / "cache")

    def crash(*args: object, **kwargs: object) -> Iterator[object]:
        raise RuntimeError("render worker died")
        yield  # pragma: no cover

    with monkeypatch.context() as patch:
        patch.setattr(windows, "iter_rendered", crash)
        [res] = run_batch([p], settings, tmp_path / "a.jsonl", options=OPTIONS)
    assert res.status == "failed" and res.errors[0].code == "internal_error"
    assert flowkit.CALLS == [] and flowkit.record_key(p, settings) is not None
    assert RecordStore.for_settings(settings).get(flowkit.record_key(p, settings) or "") is None
    [res] = run_batch([p], settings, tmp_path / "b.jsonl", options=OPTIONS)
    assert res.status == "ok" and len(flowkit.CALLS) == 1  # nothing of the crash was cached


def test_same_content_twice_in_a_batch_runs_once(tmp_path: Path) -> None:
    [p] = flowkit.make_pdfs(tmp_path / "in", 1)
    copy = tmp_path / "in" / "copy.pdf"
    copy.write_bytes(p.read_bytes())
    out = tmp_path / "o.jsonl"
    results = run_batch([p, copy], flowkit.test_settings(tmp_path / "c"), out, options=OPTIONS)
    assert len(flowkit.CALLS) == 1
    assert [r.source.path for r in results] == [str(p), str(copy)]


def test_retries_backend_errors_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = flowkit.make_pdfs(tmp_path / "in", 2)
    settings = flowkit.test_settings(tmp_path / "cache")
    monkeypatch.setenv("DOCVL_TEST_FAIL_FIRST", "2")
    options = RunOptions(backend_factory=FACTORY, retries=2, retry_delay_s=0.01, artifacts=False)
    results = batch([str(p) for p in paths], settings, options=options)
    assert [r.status for r in results] == ["ok", "ok"]
    assert len(flowkit.CALLS) == 2 + 2  # two failed attempts retried, nothing else repeated

    # Bad input is never retried: prepare runs once per bad file.
    prepares: list[Path] = []
    real = Engine.prepare

    def counting(engine: Engine, unit: Unit) -> Prepared:
        prepares.extend(unit.paths)
        return real(engine, unit)

    monkeypatch.setattr(Engine, "prepare", counting)
    empty = tmp_path / "in" / "empty.pdf"
    empty.write_bytes(b"")
    options = RunOptions(backend_factory=FACTORY, retry_delay_s=0.01, artifacts=False)
    state = analyze_batch([str(empty)], settings, options=options, return_state=True)
    [res] = envelopes_of(state)
    assert res.status == "failed" and prepares == [empty]
    # A run whose documents failed ends Failed, saying why; allow_partial accepts it.
    assert state.is_failed() and state.message is not None
    assert "1 documents, 0 ok, 1 failed (empty_file x1)" in state.message
    partial = options.model_copy(update={"allow_partial": True})
    state = analyze_batch([str(empty)], settings, options=partial, return_state=True)
    assert state.is_completed() and envelopes_of(state)[0].status == "failed"


def test_exhausted_retries_leave_a_non_final_record_that_reruns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [p] = flowkit.make_pdfs(tmp_path / "in", 1)
    settings = flowkit.test_settings(tmp_path / "cache")
    monkeypatch.setenv("DOCVL_TEST_FAIL_FIRST", "2")
    [res] = batch(
        [str(p)],
        settings,
        options=RunOptions(backend_factory=FACTORY, retries=1, retry_delay_s=0.01, artifacts=False),
    )
    assert res.status != "ok" and any(e.code == "backend_error" for e in res.errors)
    assert not is_final(res.errors)
    monkeypatch.setenv("DOCVL_TEST_FAIL_FIRST", "0")
    flowkit.reset()
    [res] = batch([str(p)], settings, options=RunOptions(backend_factory=FACTORY, artifacts=False))
    assert res.status == "ok" and len(flowkit.CALLS) == 1


def test_concurrency_limit_respected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client

    paths = flowkit.make_pdfs(tmp_path / "in", 6, pages=1)
    settings = flowkit.test_settings(tmp_path / "cache", max_concurrency=2)
    monkeypatch.setenv("DOCVL_TEST_DELAY_S", "0.3")
    results = batch(
        [str(p) for p in paths],
        settings,
        options=RunOptions(
            backend_factory=FACTORY, global_limit="docvl-test-model", artifacts=False
        ),
    )
    assert all(r.status == "ok" for r in results)
    assert flowkit.ACTIVE["peak"] == 2  # parallel, and never above the limit
    with get_client(sync_client=True) as client:  # created on demand with max_concurrency slots
        assert client.read_global_concurrency_limit_by_name("docvl-test-model").limit == 2


def test_is_final() -> None:
    ok = ResultEnvelope(source=Source(path="a"), status="ok")
    bad_input = ResultEnvelope(
        source=Source(path="a"),
        status="failed",
        errors=[ErrorRecord(code="corrupt_document", message="x")],
    )
    backend = ResultEnvelope(
        source=Source(path="a"),
        status="partial",
        errors=[ErrorRecord(code="backend_error", message="x")],
    )
    assert is_final(ok.errors) and is_final(bad_input.errors) and not is_final(backend.errors)


def test_question_across_documents_shares_windows(tmp_path: Path) -> None:
    paths = flowkit.make_pdfs(tmp_path / "in", 3)
    settings = flowkit.test_settings(tmp_path / "cache").model_copy(
        update={"tasks": ("ask",), "question": "Do they have pages?", "share_windows": True}
    )
    out = tmp_path / "ask.jsonl"
    results = run_batch(
        paths, settings, out, options=RunOptions(backend_factory="flowkit:answer_backend")
    )
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    assert flowkit.CALLS == ["ask:6"]  # one shared window: 3 documents x 2 pages
    assert all(
        r.answer is not None and r.answer.data.answer == "Every document has pages."
        for r in results
    )
    assert all(
        r.answer is not None and r.answer.documents == [str(p) for p in paths] for r in results
    )
    assert len(_lines(out)) == 3


TAG_LIMIT_SCRIPT = """
import os, sys, tempfile
from pathlib import Path
import flowkit
from prefect.client.orchestration import get_client
from docvl.flows.analyze import run_batch
from docvl.flows.options import RunOptions
from docvl.flows.tasks import MODEL_TAG

tmp = Path(tempfile.mkdtemp())
with flowkit.harness():
    with get_client(sync_client=True) as client:  # before the first model call of this process
        client.create_concurrency_limit(tag=MODEL_TAG, concurrency_limit=1)
    results = run_batch(
        flowkit.make_pdfs(tmp / "in", 3),
        flowkit.test_settings(tmp / "cache"),
        tmp / "o.jsonl",
        options=RunOptions(backend_factory="flowkit:scripted_backend"),
    )
    print("RESULT", [r.status for r in results], flowkit.ACTIVE["peak"], len(flowkit.CALLS))
"""


@pytest.mark.slow
def test_tag_concurrency_limit_caps_model_calls_across_the_server(tmp_path: Path) -> None:
    # A fresh process: Prefect clients look a tag's limit up once, so it must exist before the first
    # call.
    env = flowkit.prefect_env(tmp_path / "home") | {
        "DOCVL_TEST_DELAY_S": "0.5",
        "PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", TAG_LIMIT_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parent,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line is not None, done.stderr[-2000:]
    # 4 local slots, 3 documents: only the server-side tag limit keeps the peak at one model call
    assert line == "RESULT ['ok', 'ok', 'ok'] 1 3"
