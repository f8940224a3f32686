"""The benchmark helpers measure what they say: the synthetic PDF, the page cut, the interleaved
timer, and the P4 table against the plan."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pymupdf
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench_render  # noqa: E402
import common  # noqa: E402


def test_synthetic_pdf_has_the_pages_text_and_one_shared_image(tmp_path: Path) -> None:
    path = tmp_path / "s.pdf"
    bench_render.synthetic(path, 30)
    with pymupdf.open(path) as doc:
        assert doc.page_count == 30
        assert "page 17" in doc[16].get_text()
        xrefs = {img[0] for page in doc for img in page.get_images()}
        assert len(xrefs) == 1


def test_cut_keeps_the_first_pages_only(tmp_path: Path) -> None:
    src = tmp_path / "s.pdf"
    bench_render.synthetic(src, 12)
    short = bench_render.cut(src, 5, tmp_path)
    assert short != src
    with pymupdf.open(short) as doc:
        assert doc.page_count == 5
        assert "page 5" in doc[4].get_text()
    assert bench_render.cut(src, 50, tmp_path) == src


def test_interleaved_keeps_each_functions_best_round() -> None:
    calls: list[str] = []

    def slow() -> None:
        calls.append("slow")
        time.sleep(0.02)

    def fast() -> None:
        calls.append("fast")

    best = common.interleaved({"slow": slow, "fast": fast}, rounds=3)
    assert calls == ["slow", "fast"] * 3
    assert best["slow"] >= 0.02 > best["fast"]


def test_table_is_markdown() -> None:
    assert common.table(["a", "b"], [["1", "2"]]).splitlines() == [
        "| a | b |",
        "|---|---|",
        "| 1 | 2 |",
    ]


@pytest.mark.slow
def test_windows_table_matches_the_plan() -> None:
    import bench_windows

    corpus = common.CORPUS
    if not (corpus / "good").is_dir():
        pytest.fail(f"corpus not found at {corpus}")
    text = bench_windows.run(corpus, [32_768])
    book = next(line for line in text.splitlines() if "freeculture_book_352p.pdf" in line)
    cells = [c.strip() for c in book.strip("|").split("|")]
    assert cells[2] == "352"
    assert int(cells[4]) >= int(cells[5]) >= 2  # planned windows >= the lower bound
