"""The planner: per-page tokens, windows covering every page in order, failures as records."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from docvl.pipeline.ingest.geometry import image_tokens, page_pixels
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.planner import plan_paths
from docvl.pipeline.settings import Settings

INSTRUCTION = "Summarise the document."


def make_pdf(
    path: Path, pages: int, size: tuple[float, float] = (595, 842), text: str = "Hello page"
) -> Path:
    doc = pymupdf.open()
    for n in range(pages):
        page = doc.new_page(width=size[0], height=size[1])
        page.insert_text((72, 72), f"{text} {n + 1}")
    doc.save(path)
    doc.close()
    return path


def test_page_tokens_follow_the_budget(tmp_path: Path) -> None:
    settings = Settings()
    plan = plan_paths(
        [make_pdf(tmp_path / "a.pdf", 3)], settings, TokenCounter(), {"summary": INSTRUCTION}
    )
    [doc] = plan.documents
    assert doc.status == "ok" and doc.pages == 3 and doc.kind == "pdf"
    a4 = page_pixels_for(595, 842, settings)
    for t in doc.page_tokens:
        assert (t.height, t.width) == a4
        assert t.image == image_tokens(*a4) + 2
        assert t.text > 0
    [window] = doc.windows
    assert (window.first_page, window.last_page) == (1, 3)
    assert window.input_tokens == doc.input_tokens
    assert window.input_tokens > sum(t.image + t.text for t in doc.page_tokens)


def page_pixels_for(width: float, height: float, settings: Settings) -> tuple[int, int]:
    from docvl.pipeline.ingest.document import DocKind, PageInfo

    return page_pixels(PageInfo(1, width, height), DocKind.PDF, settings)


def test_long_document_splits_into_minimal_ordered_windows(tmp_path: Path) -> None:
    settings = Settings(context_window=40_000, max_output_tokens=1_000)
    plan = plan_paths(
        [make_pdf(tmp_path / "long.pdf", 60)], settings, TokenCounter(), {"summary": INSTRUCTION}
    )
    [doc] = plan.documents
    pages = [p for w in doc.windows for p in range(w.first_page, w.last_page + 1)]
    assert pages == list(range(1, 61))
    assert all(
        w.input_tokens <= settings.context_window - settings.max_output_tokens for w in doc.windows
    )
    per_page = doc.page_tokens[0].image + doc.page_tokens[0].text
    content = settings.context_window - settings.max_output_tokens - plan.framing_tokens - 30
    assert len(doc.windows) <= -(-60 // (content // per_page))


def test_bad_file_is_a_record_and_others_still_plan(tmp_path: Path) -> None:
    bad = tmp_path / "notes.pdf"
    bad.write_text("# not a pdf\n")
    good = make_pdf(tmp_path / "good.pdf", 1)
    plan = plan_paths([bad, good], Settings(), TokenCounter(), {"summary": INSTRUCTION})
    failed, ok = plan.documents
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "unsupported_format" and failed.path == str(bad)
    assert ok.status == "ok" and ok.windows


def test_shared_windows_pack_documents_together(tmp_path: Path) -> None:
    paths = [make_pdf(tmp_path / f"d{i}.pdf", 2) for i in range(3)]
    plan = plan_paths(paths, Settings(share_windows=True), TokenCounter(), {"summary": INSTRUCTION})
    spans = [
        [(s.doc, s.first_page, s.last_page) for s in d.windows[0].spans] for d in plan.documents
    ]
    assert spans[0] == spans[1] == spans[2] == [(0, 1, 2), (1, 1, 2), (2, 1, 2)]


def test_several_tasks_count_each_request(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "a.pdf", 2)
    one = (
        plan_paths([path], Settings(), TokenCounter(), {"summary": INSTRUCTION})
        .documents[0]
        .windows[0]
    )
    two = plan_paths(
        [path],
        Settings(),
        TokenCounter(),
        {"summary": INSTRUCTION, "extract": "Extract the invoice."},
    ).documents[0]
    assert two.windows[0].input_tokens > one.input_tokens
    assert two.windows[0].input_tokens < 2 * one.input_tokens + 50


@pytest.mark.slow
def test_freeculture_book_covers_every_page(corpus: Path) -> None:
    settings = Settings()
    plan = plan_paths(
        [corpus / "good/freeculture_book_352p.pdf"],
        settings,
        TokenCounter(),
        {"summary": INSTRUCTION},
    )
    [doc] = plan.documents
    assert doc.pages == 352
    pages = [p for w in doc.windows for p in range(w.first_page, w.last_page + 1)]
    assert pages == list(range(1, 353))
    assert all(w.input_tokens <= settings.context_window for w in doc.windows)
    # minimal: no two neighbouring windows could have been one
    limit = settings.context_window - settings.max_output_tokens
    by_page = {t.page: t.image + t.text for t in doc.page_tokens}
    for left, right in zip(doc.windows, doc.windows[1:], strict=False):
        assert left.input_tokens + by_page[right.first_page] > limit
