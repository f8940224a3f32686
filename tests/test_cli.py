"""The command line: JSON shape, exit codes (0 ok, 1 a document failed, 2 usage), no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from docvl.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_json_shape_and_exit_codes(
    samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "plan", str(samples / "invoice.pdf"), str(samples / "report.pdf"), "--json"
    )
    assert code == 0
    plan = json.loads(out)
    assert plan["context_window"] == 262144
    for doc in plan["documents"]:
        assert {"path", "kind", "status", "pages", "page_tokens", "windows", "error"} <= set(doc)
        assert doc["status"] == "ok" and doc["error"] is None
        assert [t["page"] for t in doc["page_tokens"]] == list(range(1, doc["pages"] + 1))
        assert all({"page", "image", "text"} <= set(t) for t in doc["page_tokens"])
        assert (
            doc["windows"][0]["first_page"] == 1 and doc["windows"][-1]["last_page"] == doc["pages"]
        )

    bad = tmp_path / "notes.pdf"
    bad.write_text("# just markdown\n")
    code, out, err = run(capsys, "plan", str(bad), str(samples / "invoice.pdf"), "--json")
    assert code == 1 and "Traceback" not in err
    failed, ok = json.loads(out)["documents"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "unsupported_format"
    assert ok["status"] == "ok"


def test_plan_text_output(samples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", str(samples / "report.pdf"), "--price-input", "1.0")
    assert code == 0
    assert (
        "window 1 (summary): pages 1-5" in out
        and "estimated cost $" in out
        and "page tokens (image+text): 1:" in out
    )


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "x.pdf", "--task", "extract"],
        ["plan", "x.pdf", "--task", "extract", "--schema", "no_such_schema"],
        ["plan", "x.pdf", "--task", "ask"],
        ["plan", "x.pdf", "--dpi", "5"],
        ["run", "x.pdf", "--backend", "openai"],
        ["trigger", "flow/dep", "--param", "novalue"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2
    assert err.startswith("docvl: error: ") and "Traceback" not in err


def test_unknown_option_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "x.pdf", "--bogus")
    assert code == 2
    assert err.startswith("docvl: error: No such option: --bogus") and len(err.splitlines()) == 1


def test_schemas_list_show_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schemas", "list")
    assert code == 0 and "invoice" in out and "summary" in out
    code, out, _ = run(capsys, "schemas", "show", "invoice")
    assert code == 0 and "line_items" in json.loads(out)["properties"]
    target = tmp_path / "envelope.schema.json"
    assert run(capsys, "schemas", "export", "--out", str(target))[0] == 0
    schema = json.loads(target.read_text())
    assert {
        "schema_version",
        "source",
        "status",
        "errors",
        "model",
        "plan",
        "usage",
        "timings",
    } <= set(schema["properties"])


def test_the_cli_quiets_prefect_before_prefect_loads() -> None:
    """The commands import flows (and so Prefect) lazily: Prefect's logging default must already be
    set when they do, or a run prints Prefect's per-task INFO lines over the progress bars."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_LOGGING_LEVEL"}
    code = (
        "import docvl.cli, docvl.flows.analyze\n"
        "from prefect.settings import get_current_settings\n"
        "print(get_current_settings().logging.level)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "WARNING", done.stderr[-2000:]
