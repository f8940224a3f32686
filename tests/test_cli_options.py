"""The CLI's options: generated from Settings, every mistake refused before any slow work (exit 2,
one line, Prefect/torch/transformers never imported: what keeps it within a second or two; the
tests assert the imports, not the seconds), inputs, pages, SIGPIPE, umask."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer

from docvl.cli import app, main
from docvl.flags import with_settings
from docvl.inputs import expand_inputs
from docvl.pipeline.errors import UsageError
from docvl.pipeline.plan.pack import PackItem, pack, segment
from docvl.pipeline.settings import Settings

HEAVY = ("prefect", "torch", "transformers")
ROOT = Path(__file__).resolve().parents[1]

#: Runs CLI invocations in one fresh interpreter: per call its exit code and stderr; then which
#: heavy modules were imported by the end.
PROBE = """
import contextlib, io, json, sys
from docvl.cli import main
results = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(args)
    results.append({"code": code, "err": err.getvalue()})
print(json.dumps({"results": results, "heavy": sorted(m for m in %r if m in sys.modules)}))
"""


def probe(cases: list[list[str]], env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


class PrefectDeployments(http.server.BaseHTTPRequestHandler):
    """Models the Prefect API's read-deployment-by-name route: 200 with the deployment for
    ``docvl-inbox/inbox``, 404 ``{"detail": "Deployment not found"}`` for any other name."""

    def do_GET(self) -> None:
        known = self.path == "/api/deployments/name/docvl-inbox/inbox"
        body = json.dumps({"name": "inbox"} if known else {"detail": "Deployment not found"})
        self.send_response(200 if known else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def prefect_api() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PrefectDeployments)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()


def test_every_mistake_is_one_line_exit_2_before_any_heavy_import(
    samples: Path, tmp_path: Path, prefect_api: str
) -> None:
    pdf = str(samples / "invoice.pdf")
    cases = {
        "question": ["run", pdf, "--task", "ask"],
        "invoce": ["run", pdf, "--task", "extract", "--schema", "invoce"],
        "http://": ["run", pdf, "--backend", "openai", "--base-url", "localhost:8000/v1"],
        "needs --base-url": ["run", pdf, "--backend", "openai"],
        "is a directory": ["run", pdf, "--out", str(tmp_path)],
        "no deployment 'docvl-inbox/nope'": ["trigger", "docvl-inbox/nope"],
        "flow-name/deployment-name": ["trigger", "nope"],
        "K=V": ["trigger", "docvl-inbox/inbox", "--param", "novalue"],
        "--to": ["run", pdf, "--to", "json,pdf"],
        "--pages": ["run", pdf, "--pages", "5-2"],
        "no file matches": ["run", str(tmp_path / "*.nothing")],
        "--dpi": ["plan", pdf, "--dpi", "5"],
        "--max-failures": ["run", pdf, "--max-failures", "0"],
        "No such option: --bogus": ["run", pdf, "--bogus"],
        "exactly one of --cron or --interval": ["serve", "--inbox", "a", "--outbox", "b"],
    }
    report = probe(list(cases.values()), env={"PREFECT_API_URL": prefect_api})
    for (needle, args), result in zip(cases.items(), report["results"], strict=True):
        err = result["err"]
        assert result["code"] == 2, (args, err)
        assert err.startswith("docvl: error: ") and needle in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
    assert report["heavy"] == []


def test_help_and_version_import_nothing_heavy() -> None:
    report = probe([["--help"], ["run", "--help"], ["--version"]])
    assert [r["code"] for r in report["results"]] == [0, 0, 0]
    assert report["heavy"] == []


def test_every_settings_field_is_a_documented_flag() -> None:
    command = typer.main.get_command(app)
    for name in ("plan", "run", "serve"):
        params = command.commands[name].params  # type: ignore[attr-defined]
        options = {opt: p for p in params for opt in [*p.opts, *p.secondary_opts]}
        for field, info in Settings.model_fields.items():
            assert info.description, f"Settings.{field} has no description"
            flag = options[f"--{field.replace('_', '-')}"]
            assert info.description in flag.help and f"DOCVL_{field.upper()}" in flag.help


def test_flags_become_settings_overrides() -> None:
    seen: dict[str, Any] = {}
    probe_app = typer.Typer()

    @probe_app.command()
    @with_settings
    def cmd(
        path: Annotated[str, typer.Argument()], *, overrides: dict[str, Any]
    ) -> None:  # the command under test: keeps what the flags gave
        seen.update(overrides, path=path)

    args = ["x.pdf", "--task", "summary", "--task", "ask", "--task", "ask", "--no-text"]
    args += ["--backend", "openai", "--dpi", "200", "--schema", "invoice", "--pages", "1-2"]
    typer.main.get_command(probe_app).main(args=args, standalone_mode=False)
    assert seen == {
        "path": "x.pdf",
        "tasks": ("summary", "ask"),
        "include_text": False,
        "backend": "openai",
        "dpi": 200,
        "schema_name": "invoice",
        "pages": "1-2",
    }
    assert type(seen["backend"]) is str


def test_environment_values_are_checked_like_flags(
    samples: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCVL_DPI", "5")
    assert main(["plan", str(samples / "invoice.pdf")]) == 2
    assert "--dpi" in capsys.readouterr().err


def test_inputs_directories_globs_and_missing_files(tmp_path: Path) -> None:
    for rel in ("a.pdf", "sub/b.PNG", "sub/deep/c.pptx", ".hidden/d.pdf", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = expand_inputs([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.pdf",
        "sub/b.PNG",
        "sub/deep/c.pptx",
    ]
    pattern = str(tmp_path / "**" / "*.p*")
    globbed = [p.relative_to(tmp_path).as_posix() for p in expand_inputs([pattern])]
    assert globbed == ["a.pdf", "sub/deep/c.pptx"]
    missing = tmp_path / "missing.pdf"
    assert expand_inputs([missing, tmp_path / "notes.txt"]) == [missing, tmp_path / "notes.txt"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no document"):
        expand_inputs([tmp_path / "empty"])


def test_page_selection_plans_only_the_selected_pages(
    samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(samples / "report.pdf"), "--pages", "2-3,5", "--json"]) == 0
    [doc] = json.loads(capsys.readouterr().out)["documents"]
    covered = [(s["first_page"], s["last_page"]) for w in doc["windows"] for s in w["spans"]]
    assert covered == [(2, 3), (5, 5)]
    assert main(["plan", str(samples / "report.pdf"), "--pages", "9", "--json"]) == 1
    [doc] = json.loads(capsys.readouterr().out)["documents"]
    assert doc["status"] == "failed" and doc["error"]["code"] == "empty_document"
    assert "--pages 9" in doc["error"]["message"]


def test_packing_never_bridges_a_gap_in_the_selection() -> None:
    items = [PackItem(0, page, 10, 5) for page in (1, 2, 5, 6, 9)]
    windows = pack(items, budget=1000, framing=1, header_tokens=[1], max_images=50)
    assert [(w.first_page, w.last_page) for w in windows] == [(1, 2), (5, 6), (9, 9)]
    segments = segment(
        items, budget=1000, framing=1, header_tokens=[1], max_images=50, output_budget=1000
    )
    assert [(w.first_page, w.last_page) for w in segments] == [(1, 2), (5, 6), (9, 9)]


def test_settings_pages_syntax() -> None:
    assert Settings(pages="1-5, 9").page_ranges() == [(1, 5), (9, 9)]
    assert Settings().page_ranges() is None
    for bad in ("", "0", "3-1", "1-", "a", "1,,2"):
        with pytest.raises(ValueError):
            Settings(pages=bad)


def test_a_closed_pipe_exits_quietly_with_0() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "docvl.cli", "schemas", "export"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head` that has already gone
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == ""


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640)])
def test_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    code = (
        f"import os; os.umask({umask}); from pathlib import Path; "
        "from docvl.flows.store import atomic_write_json; "
        f"atomic_write_json(Path({str(tmp_path / 'r.json')!r}), {{'a': 1}})"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == mode


def test_progress_shows_each_document_in_flight_with_its_stage() -> None:
    import io

    from rich.console import Console

    from docvl.flows import progress

    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, width=120)
    with progress.progress_bar(3, console=console):
        progress.emit("started", path="in/report.pdf")
        progress.emit("started", path="in/deck.pptx")
        progress.emit("started", path="in/memo.pdf")
        progress.emit("planned", path="in/report.pdf", pages=5, windows=2)
        progress.emit("window", path="in/report.pdf", pages=3)
        progress.emit("document", path="in/memo.pdf", status="failed", pages=0, windows=0)
    shown = sink.getvalue().rsplit("documents", 1)[-1]  # the final frame: in flight, and stage
    assert "report.pdf · windows" in shown and "1/2" in shown
    assert "deck.pptx · loading" in shown
    assert "memo.pdf" not in shown  # its row went when it finished


def test_a_richer_setting_is_a_json_flag() -> None:
    """A field that is neither a scalar, a choice nor a list (e.g. provider fields as a mapping)
    takes JSON, as pydantic-settings reads it from its DOCVL_* variable."""
    from pydantic.fields import FieldInfo

    from docvl.flags import convert, parameter

    info = FieldInfo.from_annotation(dict[str, Any] | None)
    info.description = "provider fields sent with every request"
    option = typing.get_args(parameter("extra_body", info).annotation)[1]
    assert option.metavar == "JSON" and "DOCVL_EXTRA_BODY" in option.help
    value = convert("extra_body", info, '{"provider": {"require_parameters": true}}')
    assert value == {"provider": {"require_parameters": True}}
    with pytest.raises(UsageError, match="--extra-body wants JSON"):
        convert("extra_body", info, "{not json")
