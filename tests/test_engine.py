"""The engine's failure policy: bugs are internal errors (never final), bad input is final, and one
document's failure never touches the others (pipeline/engine/core.py, pipeline/errors.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_analyze import SETTINGS, make_pdf, pages_in, reply

from docvl.pipeline.engine import Engine, windows
from docvl.pipeline.engine import prepare as prepare_module
from docvl.pipeline.engine.prepare import plan_documents
from docvl.pipeline.model.scripted import ScriptedBackend
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.policy import is_final
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.specs import task_specs


def test_a_renderer_crash_is_internal_not_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: Any, **kwargs: Any) -> Iterator[Any]:
        raise RuntimeError("worker died")
        yield  # pragma: no cover

    monkeypatch.setattr(windows, "iter_rendered", crash)
    backend = ScriptedBackend(reply)
    [env] = Engine(Settings(**SETTINGS), backend, TokenCounter()).analyze(
        [make_pdf(tmp_path / "a.pdf", 2)]
    )
    assert env.status == "failed" and {e.code for e in env.errors} == {"internal_error"}
    assert "worker died" in env.errors[0].message and not backend.calls
    assert not is_final(env.errors)  # a runner never caches it as final


def test_a_bug_in_one_document_leaves_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine(Settings(**SETTINGS), ScriptedBackend(reply), TokenCounter())
    real = engine.prepare

    def flaky(unit: Any) -> Any:
        if unit.paths[0].name == "bad.pdf":
            raise KeyError("boom")
        return real(unit)

    monkeypatch.setattr(engine, "prepare", flaky)
    good, bad = make_pdf(tmp_path / "good.pdf", 1), make_pdf(tmp_path / "bad.pdf", 1)
    first, second = engine.analyze([good, bad])
    assert first.status == "ok"
    assert second.status == "failed" and second.errors[0].code == "internal_error"
    assert second.source.sha256 is not None and second.model is not None  # one envelope builder


def _cut_long_extractions(limit: int) -> Any:
    """A model whose extraction reply fits ``max_new_tokens`` only for ``limit`` pages or fewer
    (it stops with ``finish_reason: length`` otherwise, as a server does)."""

    def answer(content: Any, request: Any) -> Any:
        text = reply(content, request)
        if "'form' schema" in request.instruction and len(pages_in(content)) > limit:
            return text[: len(text) // 2], "length"
        return text

    return answer


def test_a_reply_too_long_splits_the_window_never_asks_again(tmp_path: Path) -> None:
    settings = Settings(**SETTINGS)  # one window holds all 6 pages
    backend = ScriptedBackend(_cut_long_extractions(limit=2))
    [env] = Engine(settings, backend, TokenCounter()).analyze([make_pdf(tmp_path / "a.pdf", 6)])
    assert env.status == "ok", env.errors
    assert env.extraction is not None
    keys = sorted(int(f["key"].split()[-1]) for f in env.extraction.data["fields"])
    assert keys == [1, 2, 3, 4, 5, 6]
    extract = [c for c in backend.calls if "'form' schema" in c.request.instruction]
    asked = [tuple(pages_in(c.content)) for c in extract]
    assert len(asked) == len(set(asked))  # the same request is never sent twice
    assert [len(p) for p in asked] == [6, 3, 1, 2, 3, 1, 2]  # bisected until each half fits
    assert env.usage.requests == len(backend.calls)


def test_a_page_that_never_fits_is_a_hard_stop(tmp_path: Path) -> None:
    settings = Settings(**SETTINGS)
    backend = ScriptedBackend(_cut_long_extractions(limit=0))
    [env] = Engine(settings, backend, TokenCounter()).analyze([make_pdf(tmp_path / "a.pdf", 2)])
    codes = {e.code for e in env.errors}
    assert "output_too_large" in codes and env.status == "partial"
    for page in (1, 2):
        budgets = [
            c.request.max_new_tokens
            for c in backend.calls
            if "'form' schema" in c.request.instruction and pages_in(c.content) == [(0, page)]
        ]
        # never the same request twice: each page is asked again only with a larger budget
        assert len(budgets) > 1 and budgets == sorted(set(budgets))
        assert budgets[-1] <= settings.context_window
    assert is_final(env.errors)  # the same request gives the same answer: the record is final


def test_a_bug_in_one_file_leaves_the_plan_of_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = prepare_module.load_document

    def flaky(path: Path, settings: Settings) -> Any:
        if path.name == "bad.pdf":  # e.g. PyMuPDF's RuntimeError from Document.page_count
            raise RuntimeError("code=7: Invalid number of pages")
        return real(path, settings)

    monkeypatch.setattr(prepare_module, "load_document", flaky)
    paths = [make_pdf(tmp_path / "bad.pdf", 1), make_pdf(tmp_path / "good.pdf", 2)]
    plan = plan_documents(
        paths, Settings(**SETTINGS), TokenCounter(), task_specs(Settings(**SETTINGS))
    )
    bad, good = plan.documents
    assert bad.status == "failed" and bad.error is not None and bad.error.code == "internal_error"
    assert "Invalid number of pages" in bad.error.message
    assert good.status == "ok" and good.windows
