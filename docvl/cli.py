"""The ``docvl`` command line (Typer + Rich): thin; parses arguments into Settings and calls the
pipeline or flows.

Exit codes: 0 all documents ok, 1 any document failed (recorded in the output), 2 usage error,
130/143 stopped by SIGINT/SIGTERM (``docvl run``: finished documents are kept; rerun to resume).
Every option is checked before Prefect, torch or transformers load: those are
imported inside the commands that need them, so ``docvl --help`` and usage errors are fast.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, cast

# Before Prefect is imported (inside the commands), which reads them once: offline, and progress
# bars rather than Prefect's per-task INFO lines (PREFECT_LOGGING_LEVEL=INFO brings those back).
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import typer

from docvl import commands
from docvl.flags import with_settings
from docvl.pipeline.errors import DocvlError, UsageError
from docvl.pipeline.result import envelope_json_schema
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.specs import load_schema
from docvl.schemas import list_schemas

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

app = typer.Typer(
    name="docvl",
    help="PDFs and slide decks to JSON with Qwen3-VL: summaries, answers and extractions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
schemas_app = typer.Typer(help="built-in schemas and the result envelope", no_args_is_help=True)
dev_app = typer.Typer(help="developer tools", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.add_typer(dev_app, name="dev")

Paths = Annotated[
    list[str],
    typer.Argument(
        metavar="PATH...", help="documents, directories (searched recursively) or globs"
    ),
]
GlobalLimit = Annotated[
    str | None,
    typer.Option(
        "--global-limit",
        metavar="NAME",
        help="also hold a slot of this Prefect global concurrency limit per model call (shared by "
        "every process on the Prefect server; created with --max-concurrency slots if missing)",
    ),
]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("docvl")
        except PackageNotFoundError:  # a source checkout that was never installed
            number = "0+unknown"
        typer.echo(f"docvl {number}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="print the version"),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks of internal errors")] = (
        False
    ),
) -> None:
    """PDFs and slide decks to JSON with Qwen3-VL: summaries, answers and extractions."""


@app.command("plan")
@with_settings
def plan_command(
    paths: Paths,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
    *,
    overrides: dict[str, Any],
) -> int:
    """Token plan: pages, windows, cost (no model call)."""
    return commands.plan(paths, overrides, json_out)


@app.command("run")
@with_settings
def run_command(
    paths: Paths,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="JSONL file of every record, or - for stdout (the default without --output-dir)",
        ),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", help="write one <stem>.<sha12>.<format> file per document"),
    ] = None,
    to: Annotated[
        str, typer.Option("--to", help="formats for --output-dir (and stdout): json, md or json,md")
    ] = "json",
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help="progress bars on stderr (default: when a terminal)"
        ),
    ] = None,
    max_failures: Annotated[
        int | None,
        typer.Option(
            "--max-failures",
            min=1,
            help="stop starting documents after N failed; the rest are recorded not_attempted",
        ),
    ] = None,
    global_limit: GlobalLimit = None,
    *,
    overrides: dict[str, Any],
) -> int:
    """Run the tasks on documents; write one JSON record per document."""
    return commands.run(
        commands.RunArgs(
            paths=paths,
            out=out,
            output_dir=output_dir,
            to=to,
            progress=progress,
            max_failures=max_failures,
            global_limit=global_limit,
        ),
        overrides,
    )


@app.command("serve")
@with_settings
def serve_command(
    inbox: Annotated[Path, typer.Option("--inbox", help="folder watched for documents")],
    outbox: Annotated[Path, typer.Option("--outbox", help="folder the records go to")],
    cron: Annotated[str | None, typer.Option("--cron", help="schedule as a cron line")] = None,
    interval: Annotated[
        float | None, typer.Option("--interval", help="schedule every N seconds")
    ] = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="POST each record to this URL")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="deployment name")] = "docvl-inbox",
    global_limit: GlobalLimit = None,
    *,
    overrides: dict[str, Any],
) -> int:
    """Serve the inbox flow on a schedule."""
    if (cron is None) == (interval is None):
        raise UsageError("serve wants exactly one of --cron or --interval")
    return commands.serve(overrides, inbox, outbox, cron, interval, webhook, name, global_limit)


@app.command("trigger")
def trigger_command(
    deployment: Annotated[str, typer.Argument(help="'flow-name/deployment-name'")],
    param: Annotated[
        list[str] | None, typer.Option("--param", metavar="K=V", help="a flow parameter")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the run is final")] = False,
) -> int:
    """Start a run of a served or deployed flow on a Prefect server (PREFECT_API_URL)."""
    return commands.trigger(deployment, param or [], wait)


@app.command("report")
def report_command(
    results: Annotated[
        Path,
        typer.Argument(
            metavar="RESULTS", help="a JSONL file (run --out) or a directory (run --output-dir)"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="the HTML file to write")] = Path(
        "report.html"
    ),
    images: Annotated[
        str,
        typer.Option(
            "--images",
            help="page images: cited (page 1 and every page something cites), all, or none",
        ),
    ] = "cited",
) -> int:
    """One self-contained HTML file to review the results next to their pages."""
    if images not in ("cited", "all", "none"):
        raise UsageError(f"--images must be cited, all or none, not {images!r}")
    from docvl.review import Images, write_report

    path, count = write_report(results, out, Settings(), cast("Images", images))
    print(f"docvl: report of {count} documents written to {path}", file=sys.stderr)
    return EXIT_OK


@schemas_app.command("list")
def schemas_list() -> int:
    """The built-in schemas."""
    for name, doc in list_schemas().items():
        print(f"{name:16} {doc}")
    return EXIT_OK


@schemas_app.command("show")
def schemas_show(name: Annotated[str, typer.Argument(help="schema name")]) -> int:
    """The JSON Schema of a built-in schema, module:Class or file.json."""
    print(json.dumps(load_schema(name).model_json_schema(), indent=2))
    return EXIT_OK


@schemas_app.command("export")
def schemas_export(
    out: Annotated[str, typer.Option("--out", help="file, or - for stdout")] = "-",
) -> int:
    """The JSON Schema of the result envelope."""
    text = json.dumps(envelope_json_schema(), indent=2)
    if out == "-":
        print(text)
    else:
        Path(out).write_text(text + "\n")
    return EXIT_OK


@dev_app.command("tiny-model")
def dev_tiny_model(directory: Annotated[Path, typer.Argument(metavar="DIR")]) -> int:
    """Build a tiny random Qwen3-VL checkpoint for offline smoke tests."""
    from docvl.pipeline.dev.tiny import build_tiny_model

    print(build_tiny_model(directory))
    return EXIT_OK


@dev_app.command("serve")
def dev_serve(
    model: Annotated[str, typer.Option("--model", help="local checkpoint directory")],
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    device: Annotated[
        str | None,
        typer.Option("--device", help="torch device (default: cuda when available, else cpu)"),
    ] = None,
) -> int:
    """OpenAI-compatible server over a local checkpoint."""
    from docvl.pipeline.dev.server import main as serve_main

    return serve_main(model, host, port, device)


def _quiet_broken_pipe() -> int:
    """The reader went away (``docvl schemas show invoice | head``): stop quietly, and point stdout
    at /dev/null so the interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a captured stdout (tests) has no descriptor
        pass
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (never raises, except with ``--debug``)."""
    for stream in (sys.stdout, sys.stderr):  # a name or warning the terminal cannot encode
        if isinstance(stream, io.TextIOWrapper):  # is escaped, never an internal error
            stream.reconfigure(errors="backslashreplace")
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="docvl", standalone_mode=False)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at exit
    except typer.Exit as exc:  # --help, --version
        return int(exc.exit_code)
    except typer.TyperException as exc:  # unknown option, bad value, missing argument
        if type(exc).__name__ == "NoArgsIsHelpError":  # `docvl` alone: the help, as usage
            print(exc.format_message(), file=sys.stderr)
            return EXIT_USAGE
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print(f"docvl: error: {exc.format_message()}{hint}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"docvl: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except DocvlError as exc:
        print(f"docvl: [{exc.code}] {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except SystemExit as exc:  # click turns EPIPE into exit 1; anything else passes through
        if isinstance(exc.__context__, BrokenPipeError):
            return _quiet_broken_pipe()
        raise
    # Signals: Ctrl-C arrives as KeyboardInterrupt or typer.Abort (130). SIGTERM (143) is mapped by
    # the flows' signal handling; its exception belongs here, next to these.
    except (KeyboardInterrupt, typer.Abort):
        print("docvl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last line of defence: no traceback at the user
        if "--debug" in args:
            raise
        print(
            f"docvl: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return result if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
