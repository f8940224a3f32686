"""The synth documents' printed format and PDF writer (pipeline/dev/printed.py)."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from docvl.pipeline.dev.printed import CONT_RE, LINE_RE, START_RE, write_pdf


def test_the_line_patterns_tell_whole_lines_starts_and_rests_apart() -> None:
    whole = "L0017 | SKU-0017 | Steel hex bolt zinc plated | qty 3 | 4.50 | 13.50"
    start, rest = (
        "L0020 | SKU-0020 | Heavy duty shelving",
        "unit with fixings | qty 2 | 85.00 | 170.00",
    )
    assert LINE_RE.match(whole) and not START_RE.match(whole) and not CONT_RE.match(whole)
    assert START_RE.match(start) and not LINE_RE.match(start) and not CONT_RE.match(start)
    assert CONT_RE.match(rest) and not LINE_RE.match(rest) and not START_RE.match(rest)


def test_write_pdf_writes_one_text_line_per_line(tmp_path: Path) -> None:
    lines = ["PURCHASE ORDER", "", "Total: 12.50"]
    path = write_pdf(tmp_path / "one.pdf", [lines, ["Page 2"]], "two pages")
    with pymupdf.open(path) as doc:
        assert doc.page_count == 2
        text = doc[0].get_text()
    assert [line for line in text.splitlines() if line.strip()] == [
        "PURCHASE ORDER",
        "Total: 12.50",
    ]


def test_write_pdf_refuses_what_does_not_fit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="do not fit"):
        write_pdf(tmp_path / "x.pdf", [["line"] * 400], "too many lines")
    with pytest.raises(ValueError, match="at least one page"):
        write_pdf(tmp_path / "x.pdf", [], "no pages")
