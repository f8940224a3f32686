"""The benchmark helpers measure what they say: the synthetic PDF, the page cut, the interleaved
timer, and the P4 table against the plan."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

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


def _measured(label: str, prefix: float, suffix: float, **kw: float) -> Any:
    import bench_model

    values: dict[str, Any] = {
        "wall": 10.0,
        "load_render": 1.0,
        "prefills": 1,
        "decode": 1.0,
        "forward": 4.0,
        "backend": 5.0,
        "prefix_tokens": 100,
        "input_tokens": 300,
        "output_tokens": 20,
        "buckets": dict.fromkeys(bench_model.BUCKETS, 0.1),
    }
    values.update(kw)
    return bench_model.Measured(label=label, prefix=prefix, suffix=suffix, **values)


def test_shared_prompt_ratios_against_the_largest_and_the_smallest_task() -> None:
    import bench_model

    assert bench_model.ratios(3.0, {"a": 2.0, "b": 1.5, "c": 1.0}) == (1.5, 3.0)
    m = _measured("x", prefix=2.0, suffix=0.5)
    assert m.prompt == 2.5


def test_p6_table_takes_each_rounds_ratio_then_the_median() -> None:
    import bench_model

    def round_(shared: float) -> dict[str, Any]:
        return {
            "summary alone": _measured("s", 1.0, 0.2),
            "extract alone": _measured("e", 1.0, 1.0),
            "ask alone": _measured("a", 1.0, 0.0),
            "all three": _measured("3", 1.0, shared),
        }

    text, vs_largest, vs_smallest = bench_model.p6_table([round_(0.2), round_(1.0), round_(3.0)])
    assert vs_largest == 1.0  # median shared prompt 2.0 / 2.0
    assert vs_smallest == 2.0  # 2.0 / 1.0
    lines = text.splitlines()
    assert len(lines) == 2 + 4
    assert lines[-1].startswith("| all three | 2.000 | 1.000 | 1.000 |")


def test_p7_rows_share_is_backend_wall_less_forward_over_forward() -> None:
    import bench_model

    runs = [
        _measured("3", 1.0, 0.0, forward=4.0, backend=4.2),
        _measured("3", 1.0, 0.0, forward=2.0, backend=3.0),
        _measured("3", 1.0, 0.0, forward=10.0, backend=10.5),
    ]
    rows, share = bench_model.p7_rows(runs, "docvl's decode loop")
    assert share == pytest.approx(0.05)  # shares 0.05, 0.5, 0.05
    assert rows[0] == ["model forward (all calls)", "4.000", "100.00%", "200.00"]  # 20 tokens
    assert rows[1][:3] == ["backend.generate wall - forward", "0.500", "5.00%"]
    # The rest: outside less the four buckets timed inside the backend (0.1 s each).
    rest = next(r for r in rows if "the rest" in r[0])
    assert rest[1] == "0.100"  # median of -0.2, 0.6 and 0.1
    assert [r[0] for r in rows][-2:] == [
        "validation (outside the backend)",
        "whole run - load/render - forward",
    ]
    assert bench_model.share(1.0, 0.0) == float("inf")


def test_forward_meter_counts_outermost_calls_with_their_tokens_and_tag() -> None:
    import meter
    import torch

    inner = torch.nn.Linear(4, 4)

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            time.sleep(0.01)
            return self.inner(input_ids.float())

    outer = Outer()
    fm = meter.ForwardMeter({"model": outer, "inner": inner})
    with fm:
        outer(input_ids=torch.ones(1, 4))
        fm.tag = "prefix"
        inner(torch.ones(3, 4))
        fm.tag = ""
        mark = fm.mark()
        outer(input_ids=torch.ones(1, 4))
    outer(input_ids=torch.ones(1, 4))  # after exit: not metered
    assert [(c.module, c.tokens, c.tag) for c in fm.calls] == [
        ("model", 4, ""),
        ("inner", 3, "prefix"),
        ("model", 4, ""),
    ]
    assert fm.calls[0].seconds >= 0.01
    assert fm.seconds(mark) == fm.calls[2].seconds
    assert fm.seconds(prefill=False) == 0.0


def test_stopwatch_times_wrapped_functions_and_restores_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import meter

    now = [0.0]
    monkeypatch.setattr(meter.time, "perf_counter", lambda: now[0])

    class Thing:
        def work(self, n: int) -> int:
            now[0] += 1.0  # one "second" per call
            return n + 1 if n == 0 else self.work(n - 1)

    watch = meter.Stopwatch()
    original = Thing.work
    with watch.installed():
        watch.wrap(Thing, "work", "busy")
        assert Thing().work(2) == 1
        assert Thing().work(0) == 1
    assert Thing.work is original
    assert watch.totals["busy"] == 4.0  # 3 + 1: the recursive calls are counted once
    watch.reset()
    assert Thing().work(0) == 1
    assert watch.totals == {}
    assert meter.median([3.0, 1.0, 2.0]) == 2.0
    with pytest.raises(ValueError):
        meter.median([])
