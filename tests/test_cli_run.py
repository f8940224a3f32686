"""``docvl run`` end to end on a temporary Prefect server: the output directory (JSON and
markdown), the closing summary, ``--max-failures`` and the page selection in the records."""

from __future__ import annotations

import json
from pathlib import Path

import flowkit
import pytest

from docvl.cli import main
from docvl.flows.analyze import run_batch
from docvl.flows.options import RunOptions
from docvl.outputs import document_stem, summary_lines, write_output_dir

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness", "flowkit_reset")]


def test_run_writes_output_dir_summary_and_stops_after_max_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scripted backend without replies answers ``{}``: every attempted summary fails
    validation, so with ``--max-failures 1`` the documents started after the first failure are
    recorded as not attempted (two run at once: the runner keeps at least two workers)."""
    flowkit.make_pdfs(tmp_path / "in", 4)
    out, out_dir = tmp_path / "all.jsonl", tmp_path / "od"
    args = ["run", str(tmp_path / "in"), "--backend", "scripted", "--max-attempts", "1"]
    args += ["--dpi", "36", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    args += ["--out", str(out), "--output-dir", str(out_dir), "--to", "json,md"]
    assert main([*args, "--max-failures", "1", "--max-concurrency", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # records went to the files, not stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    codes = [r["errors"][0]["code"] for r in records]
    assert [r["status"] for r in records] == ["failed"] * 4
    assert 1 <= codes.count("validation_failed") <= 2 and codes[-1] == "not_attempted"
    assert set(codes) == {"validation_failed", "not_attempted"}
    names = sorted(p.name for p in out_dir.iterdir())
    stems = [f"doc{i:03d}.{r['source']['sha256'][:12]}" for i, r in enumerate(records)]
    assert names == sorted([f"{s}.json" for s in stems] + [f"{s}.md" for s in stems])
    assert json.loads((out_dir / f"{stems[0]}.json").read_text()) == records[0]
    assert "`validation_failed`" in (out_dir / f"{stems[0]}.md").read_text()
    err = captured.err.splitlines()
    assert err[0] == "docvl: 4 documents: 0 ok, 4 failed, 0 cached"
    assert sum("[not_attempted]" in line for line in err) == codes.count("not_attempted")
    assert any("[validation_failed] (page 1)" in line for line in err)
    assert f"  output: {out}" in err and any(line.startswith("  tokens ") for line in err)
    assert "Traceback" not in captured.err

    # A rerun: the final failures come from the record store; the skipped ones are attempted.
    assert main(args) == 1
    err = capsys.readouterr().err.splitlines()
    cached = codes.count("validation_failed")
    assert err[0] == f"docvl: 4 documents: 0 ok, 4 failed, {cached} cached"
    assert not any("[not_attempted]" in line for line in err)


def test_output_dir_and_summary_of_ok_records(tmp_path: Path) -> None:
    paths = flowkit.make_pdfs(tmp_path / "in", 2, pages=3)
    settings = flowkit.test_settings(tmp_path / "cache", pages="2-3")
    options = RunOptions(backend_factory="flowkit:scripted_backend", artifacts=False)
    envelopes = run_batch(paths, settings, None, options=options)
    assert [e.status for e in envelopes] == ["ok", "ok"]
    assert [e.source.selected_pages for e in envelopes] == ["2-3", "2-3"]
    assert all(w.first_page == 2 for e in envelopes for w in e.plan.windows)
    written = write_output_dir(tmp_path / "od", envelopes, ["md"])
    assert [p.name for p in written] == [f"{document_stem(e)}.md" for e in envelopes]
    markdown = written[0].read_text()
    assert markdown.startswith(f"# {paths[0]}") and "## Summary" in markdown
    assert "About doc000" in markdown and "(p. 2)" in markdown
    lines = summary_lines(envelopes, 1, ["out.jsonl"])
    tokens = sum(e.usage.input_tokens for e in envelopes)
    assert lines[0] == "docvl: 2 documents: 2 ok, 0 failed, 1 cached"
    assert lines[1].startswith(f"  tokens {tokens:,} in / ") and ", cost $" in lines[1]
    assert lines[-1] == "  output: out.jsonl"
