"""``docvl run`` on documents that are already finished: answered from the record store without
Prefect, torch or transformers, with the same JSONL, output directory and stdout as the run that
computed them; a changed setting or an edited file goes through the flow again, which then
computes only what has no record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import flowkit
import pytest

from docvl.cli import main
from docvl.flows.analyze import run_batch
from docvl.flows.options import RunOptions
from docvl.outputs import write_output_dir

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness", "flowkit_reset")]
REPO = Path(__file__).resolve().parents[1]
HEAVY = ("prefect", "torch", "transformers")

#: Runs ``docvl run`` twice in one fresh process (to files, then to stdout), then lists the heavy
#: packages that got imported.
RERUN = textwrap.dedent("""
    import json, sys
    from docvl.cli import main
    args, report = json.loads(sys.argv[1]), sys.argv[2]
    codes = [main(args[0]), main(args[1])]
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[3])))
    with open(report, "w") as fh:
        json.dump({"codes": codes, "loaded": loaded}, fh)
""")


def _cli_env(tmp: Path) -> dict[str, str]:
    """What ``flowkit.test_settings(tmp / "cache")`` is, as the CLI's environment."""
    env = flowkit.prefect_env(tmp / "home")
    env.update(
        DOCVL_BACKEND="scripted",
        DOCVL_CACHE_DIR=str(tmp / "cache"),
        DOCVL_DPI="36",
        DOCVL_MIN_PIXELS="1024",
        DOCVL_MAX_PIXELS="65536",
    )
    return env


def test_a_rerun_of_finished_documents_skips_prefect_and_gives_the_same_output(
    tmp_path: Path,
) -> None:
    paths = flowkit.make_pdfs(tmp_path / "in", 2, pages=2)
    copy = tmp_path / "in" / "same.pdf"
    copy.write_bytes(paths[1].read_bytes())
    inputs = [*paths, copy]
    settings = flowkit.test_settings(tmp_path / "cache")
    first_out = tmp_path / "first.jsonl"
    options = RunOptions(backend_factory="flowkit:scripted_backend", artifacts=False)
    first = run_batch(inputs, settings, first_out, options=options)
    assert [e.status for e in first] == ["ok"] * 3
    write_output_dir(tmp_path / "first-od", first, ["json", "md"])

    out, od = tmp_path / "again.jsonl", tmp_path / "again-od"
    to_files = ["run", *map(str, inputs), "--out", str(out), "--output-dir", str(od)]
    to_files += ["--to", "json,md", "--no-progress"]
    to_stdout = ["run", *map(str, inputs), "--no-progress"]
    report = tmp_path / "report.json"
    argv = [json.dumps([to_files, to_stdout]), str(report), json.dumps(HEAVY)]
    done = subprocess.run(
        [sys.executable, "-c", RERUN, *argv],
        cwd=REPO,
        env=_cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(report.read_text()) == {"codes": [0, 0], "loaded": []}
    assert out.read_bytes() == first_out.read_bytes()
    names = sorted(p.name for p in (tmp_path / "first-od").iterdir())
    assert sorted(p.name for p in od.iterdir()) == names and len(names) == 6
    for name in names:
        assert (od / name).read_bytes() == (tmp_path / "first-od" / name).read_bytes(), name
    first_rows = [json.loads(line) for line in first_out.read_text().splitlines()]
    assert [json.loads(line) for line in done.stdout.splitlines()] == first_rows
    summary = [line for line in done.stderr.splitlines() if line.startswith("docvl: ")]
    assert summary == ["docvl: 3 documents: 3 ok, 0 failed, 2 cached"] * 2  # 2 distinct contents
    assert f"  output: {out}" in done.stderr and "Traceback" not in done.stderr

    # An edited file: the flow runs again, serves the unchanged document from its record and
    # computes the edited one (the CLI's scripted backend answers `{}`: a final validation failure).
    flowkit.make_pdf(paths[0], 2, text="edited")
    base = ["run", *map(str, paths), "--backend", "scripted"]
    base += ["--cache-dir", str(settings.cache_dir), "--dpi", "36", "--no-progress"]
    base += ["--min-pixels", "1024", "--max-pixels", "65536"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCVL_")}
    assert env == dict(os.environ)  # the flags above are the whole configuration
    assert main([*base, "--out", str(out)]) == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert rows[1] == json.loads(first_out.read_text().splitlines()[1])
    # A changed setting: every document again (none has a record under the new key).
    assert main([*base, "--dpi", "48", "--out", str(out)]) == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["failed", "failed"]
