"""Reading finished records back (flows/rerun.py): a batch whose units all have final records for
the current settings comes back from the record store, in input order, byte for byte what was
stored; a changed setting, an edited file, a missing, stale or non-final record sends the batch to
the runner (None)."""

from __future__ import annotations

import json
from pathlib import Path

import flowkit
import pytest

from docvl.flows.rerun import finished_batch, memory_key, stored_envelopes, timeout_key
from docvl.flows.store import RecordStore
from docvl.pipeline.engine import Engine
from docvl.pipeline.errors import DocumentTimeout, InternalError, MemoryBudgetExceeded
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.settings import Settings


def _finish(paths: list[Path], settings: Settings) -> dict[str, str]:
    """Analyse ``paths`` in process and store each record as the runner does; returns key -> the
    stored JSON text."""
    engine = Engine(settings, flowkit.locked_scripted_backend(settings), TokenCounter())
    store = RecordStore.for_settings(settings)
    units, _ = engine.units(paths)
    stored = {}
    for unit in units:
        for key, env in zip(engine.record_keys(unit), engine.analyze_unit(unit), strict=True):
            assert key is not None and env.status == "ok"
            stored[key] = store.put(key, env.model_dump(mode="json")).read_text()
    return stored


@pytest.fixture
def batch(tmp_path: Path) -> tuple[list[Path], Settings]:
    paths = flowkit.make_pdfs(tmp_path / "in", 2, pages=2)
    copy = tmp_path / "in" / "copy.pdf"
    copy.write_bytes(paths[0].read_bytes())
    settings = flowkit.test_settings(tmp_path / "cache")
    return [paths[1], copy, paths[0]], settings


def test_a_finished_batch_comes_back_from_the_store(batch: tuple[list[Path], Settings]) -> None:
    paths, settings = batch
    assert finished_batch(paths, settings) is None  # nothing stored yet
    stored = _finish(paths, settings)
    found = finished_batch(paths, settings)
    assert found is not None
    envelopes, cached = found
    assert cached == 2  # one record per distinct content, as the runner counts them
    assert [e.source.path for e in envelopes] == [str(p) for p in paths]
    records = {json.dumps(json.loads(text), sort_keys=True) for text in stored.values()}
    # ``copy`` came first with that content: its record is stored; ``paths[2]`` gets a copy
    first, stored_copy, dup = (
        json.dumps(e.model_dump(mode="json"), sort_keys=True) for e in envelopes
    )
    assert first in records and stored_copy in records and dup not in records
    assert json.loads(dup)["source"]["path"] == str(paths[2])
    assert {**json.loads(dup), "source": None} == {**json.loads(stored_copy), "source": None}


def test_changed_settings_or_files_need_the_runner(batch: tuple[list[Path], Settings]) -> None:
    paths, settings = batch
    _finish(paths, settings)
    assert finished_batch(paths, settings) is not None
    for change in (
        {"dpi": settings.dpi + 12},
        {"model": "other/model"},
        {"tasks": ("extract",), "schema_name": "invoice"},
    ):
        assert finished_batch(paths, settings.model_copy(update=change)) is None, change
    assert finished_batch(paths, settings.model_copy(update={"max_concurrency": 7})) is not None
    flowkit.make_pdf(paths[0], 2, text="edited")  # new content: no record under its key
    assert finished_batch(paths, settings) is None
    assert finished_batch(paths[1:], settings) is not None  # the others are still finished


def test_unfinished_stale_or_non_final_records_need_the_runner(tmp_path: Path) -> None:
    path = flowkit.make_pdf(tmp_path / "a.pdf", 1)
    settings = flowkit.test_settings(tmp_path / "cache")
    (key,) = _finish([path], settings)
    store = RecordStore.for_settings(settings)
    record = json.loads(store.path(key).read_text())
    store.put(key, {**record, "status": "unknown"})  # an envelope this version cannot read
    assert finished_batch([path], settings) is None
    engine = Engine(settings, flowkit.locked_scripted_backend(settings), TokenCounter())
    (unit,), _ = engine.units([path])
    (failed,) = engine.failed(unit, InternalError("a bug"))
    store.put(key, failed.model_dump(mode="json"))  # never final: tried again
    assert finished_batch([path], settings) is None
    store.path(key).unlink()
    assert finished_batch([path], settings) is None


def test_a_timeout_record_counts_under_its_own_budget(tmp_path: Path) -> None:
    path = flowkit.make_pdf(tmp_path / "a.pdf", 1)
    settings = flowkit.test_settings(tmp_path / "cache", document_timeout_s=8)
    engine = Engine(settings, flowkit.locked_scripted_backend(settings), TokenCounter())
    (unit,), _ = engine.units([path])
    (key,) = engine.record_keys(unit)
    assert key is not None
    (timed_out,) = engine.failed(unit, DocumentTimeout("past 8 s"))
    store = RecordStore.for_settings(settings)
    store.put(timeout_key(key, 8), timed_out.model_dump(mode="json"))
    found = finished_batch([path], settings)
    assert found is not None and found[0][0].errors[0].code == "document_timeout"
    assert stored_envelopes(store, [key], settings) == found[0]
    larger = settings.model_copy(update={"document_timeout_s": 30})
    assert stored_envelopes(store, [key], larger) is None  # a larger budget recomputes
    assert finished_batch([path], larger) is None
    assert stored_envelopes(store, [None], settings) is None  # an unreadable file has no record


def test_a_memory_budget_record_counts_under_its_own_budget(tmp_path: Path) -> None:
    path = flowkit.make_pdf(tmp_path / "a.pdf", 1)
    settings = flowkit.test_settings(tmp_path / "cache", memory_budget_mb=512)
    engine = Engine(settings, flowkit.locked_scripted_backend(settings), TokenCounter())
    (unit,), _ = engine.units([path])
    (key,) = engine.record_keys(unit)
    assert key is not None
    (over,) = engine.failed(unit, MemoryBudgetExceeded("over 512 MiB"))
    RecordStore.for_settings(settings).put(memory_key(key, 512), over.model_dump(mode="json"))
    found = finished_batch([path], settings)
    assert found is not None and found[0][0].errors[0].code == "memory_budget"
    assert finished_batch([path], settings.model_copy(update={"memory_budget_mb": 1024})) is None
