"""The ``docvl`` command line: thin; parses arguments into Settings and calls the pipeline or flows.

Exit codes: 0 all documents ok, 1 any document failed (recorded in the output), 2 usage error,
130/143 stopped by SIGINT/SIGTERM (``docvl run``: finished documents are kept; rerun to resume).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Before Prefect is imported (by flows, below), which reads them once: offline, and progress bars
# rather than Prefect's per-task INFO lines (PREFECT_LOGGING_LEVEL=INFO brings those back).
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from pydantic import ValidationError

from docvl.api import plan as make_plan
from flows.analyze import run_batch
from flows.inbox import serve_inbox
from flows.options import RunOptions
from flows.trigger import trigger
from pipeline.dev.server import main as serve_main
from pipeline.dev.tiny import build_tiny_model
from pipeline.errors import DocvlError, UsageError
from pipeline.model.factory import check_settings
from pipeline.result import envelope_json_schema
from pipeline.settings import Settings
from pipeline.tasks.specs import load_schema, task_specs
from schemas import list_schemas

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _task_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task and model")
    g.add_argument(
        "--task",
        action="append",
        choices=["summary", "ask", "extract"],
        dest="tasks",
        help="task to run; repeat for several tasks sharing one prefill (default: summary)",
    )
    g.add_argument(
        "--schema", dest="schema_name", help="extraction schema: NAME, module:Class or file.json"
    )
    g.add_argument("--question", help="question for --task ask")
    g.add_argument(
        "--model", help="hub id or local checkpoint directory (default Qwen/Qwen3-VL-8B-Instruct)"
    )
    g.add_argument("--backend", choices=["transformers", "openai"], help="model backend")
    g.add_argument(
        "--base-url", help="OpenAI-compatible server (vLLM, SGLang, OpenRouter); API key from env"
    )
    g.add_argument("--password", help="password for encrypted PDFs")
    g.add_argument("--max-concurrency", type=int, help="model calls at once (default 4)")
    g.add_argument(
        "--share-windows",
        action="store_true",
        default=None,
        help="pack several documents into shared windows (questions across documents)",
    )
    r = p.add_argument_group("rendering and budget")
    r.add_argument("--renderer", choices=["pymupdf", "pdf2image"])
    r.add_argument("--dpi", type=int)
    r.add_argument("--min-pixels", type=int)
    r.add_argument("--max-pixels", type=int)
    r.add_argument(
        "--no-text",
        dest="include_text",
        action="store_false",
        default=None,
        help="send page images only, without text layers",
    )
    r.add_argument("--context-window", type=int)
    r.add_argument("--max-output-tokens", type=int)
    r.add_argument("--max-images", dest="max_images_per_request", type=int)
    r.add_argument(
        "--price-input", dest="price_input_per_mtok", type=float, help="USD per 1M input tokens"
    )
    r.add_argument(
        "--price-output", dest="price_output_per_mtok", type=float, help="USD per 1M output tokens"
    )


SETTING_ARGS = (
    "tasks",
    "schema_name",
    "question",
    "model",
    "backend",
    "base_url",
    "password",
    "share_windows",
    "max_concurrency",
    "renderer",
    "dpi",
    "min_pixels",
    "max_pixels",
    "include_text",
    "context_window",
    "max_output_tokens",
    "max_images_per_request",
    "price_input_per_mtok",
    "price_output_per_mtok",
)


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        k: getattr(args, k) for k in SETTING_ARGS if getattr(args, k, None) is not None
    }
    if "tasks" in overrides:
        overrides["tasks"] = tuple(dict.fromkeys(overrides["tasks"]))
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsageError(problems) from None
    return settings


def model_settings_from(args: argparse.Namespace) -> Settings:
    """Settings for commands that call the model: refuse what can never work before touching a
    file."""
    settings = settings_from(args)
    check_settings(settings)
    task_specs(settings)  # ask without a question, a misspelt schema: exit 2 before any slow work
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docvl", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="token plan: pages, windows, cost (no model call)")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    _task_options(p)

    r = sub.add_parser(
        "run", help="run tasks on documents and write one JSON record per document (JSONL)"
    )
    r.add_argument("paths", nargs="+", type=Path)
    r.add_argument("--out", default="-", help="output JSONL file, or - for stdout (default)")
    r.add_argument("--no-progress", dest="progress", action="store_false")
    r.add_argument(
        "--global-limit",
        metavar="NAME",
        help="also hold a slot of this Prefect global concurrency limit per model call (shared by "
        "every process on the Prefect server; created with --max-concurrency slots if missing)",
    )
    _task_options(r)

    s = sub.add_parser("schemas", help="built-in schemas and the result envelope")
    ssub = s.add_subparsers(dest="schemas_command", required=True)
    ssub.add_parser("list")
    show = ssub.add_parser("show")
    show.add_argument("name")
    export = ssub.add_parser("export", help="JSON Schema of the result envelope")
    export.add_argument("--out", default="-")

    sv = sub.add_parser("serve", help="serve the inbox flow on a schedule")
    sv.add_argument("--inbox", type=Path, required=True)
    sv.add_argument("--outbox", type=Path, required=True)
    when = sv.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron")
    when.add_argument("--interval", type=float)
    sv.add_argument("--webhook", help="POST each record to this URL")
    sv.add_argument("--name", default="docvl-inbox", help="deployment name")
    sv.add_argument(
        "--global-limit", metavar="NAME", help="Prefect global concurrency limit for model calls"
    )
    _task_options(sv)

    t = sub.add_parser(
        "trigger", help="start a run of a served or deployed flow on a Prefect server"
    )
    t.add_argument("deployment", help="'flow-name/deployment-name'")
    t.add_argument("--param", action="append", default=[], metavar="K=V")
    t.add_argument("--wait", action="store_true")

    d = sub.add_parser("dev", help="developer tools")
    dsub = d.add_subparsers(dest="dev_command", required=True)
    tiny = dsub.add_parser(
        "tiny-model", help="build a tiny random Qwen3-VL checkpoint for offline smoke tests"
    )
    tiny.add_argument("dir", type=Path)
    dserve = dsub.add_parser("serve", help="OpenAI-compatible server over a local checkpoint")
    dserve.add_argument("--model", required=True)
    dserve.add_argument("--host", default="127.0.0.1")
    dserve.add_argument("--port", type=int, default=8000)
    dserve.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    return parser


def _print_plan(plan: Any) -> None:
    exact = "exact (model tokenizer)" if plan.exact_tokens else "estimated (no tokenizer on disk)"
    print(
        f"context window {plan.context_window:,} tokens; "
        f"output reserved {plan.max_output_tokens:,}; "
        f"text tokens {exact}"
    )
    for doc in plan.documents:
        print(f"\n{doc.path}")
        if doc.status == "failed" and doc.error is not None:
            print(f"  FAILED [{doc.error.code}] {doc.error.message}")
            continue
        print(
            f"  kind {doc.kind}, {doc.pages} pages, {len(doc.windows)} window(s), "
            f"{doc.input_tokens:,} input tokens, estimated cost ${doc.estimated_cost_usd:.4f}"
        )
        if doc.strategy == "segments":
            print(
                "  strategy: extraction in output-aware page segments (each reply fits "
                f"{plan.max_output_tokens:,} output tokens; neighbours share a page)"
            )
        cells = " ".join(f"{t.page}:{t.image}+{t.text}" for t in doc.page_tokens)
        print(
            textwrap.fill(
                cells,
                width=100,
                initial_indent="  page tokens (image+text): ",
                subsequent_indent="    ",
            )
        )
        for w in doc.windows:
            output = f", ~{w.output_tokens:,} of {plan.max_output_tokens:,} output tokens"
            print(
                f"  window {w.index + 1} ({', '.join(w.tasks)}): "
                f"pages {w.first_page}-{w.last_page}, {w.images} images, "
                f"{w.input_tokens:,} input tokens" + (output if w.output_tokens else "")
            )
        for warning in doc.warnings:
            print(f"  warning: {warning}")


def cmd_plan(args: argparse.Namespace) -> int:
    plan = make_plan(args.paths, settings_from(args))
    if args.json:
        print(plan.model_dump_json(indent=2))
    else:
        _print_plan(plan)
    return EXIT_FAILED if any(d.status == "failed" for d in plan.documents) else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    settings = model_settings_from(args)
    out = None if args.out == "-" else Path(args.out)
    results = run_batch(
        list(args.paths),
        settings,
        out,
        show_progress=args.progress and out is not None,
        options=RunOptions(global_limit=args.global_limit),
        exit_on_signal=True,  # SIGINT/SIGTERM: one line, children stopped, exit 130/143
    )
    if out is None:
        for record in results:
            print(record.model_dump_json())
    return EXIT_OK if all(r.status == "ok" for r in results) else EXIT_FAILED


def cmd_schemas(args: argparse.Namespace) -> int:
    if args.schemas_command == "list":
        for name, doc in list_schemas().items():
            print(f"{name:16} {doc}")
    elif args.schemas_command == "show":
        print(json.dumps(load_schema(args.name).model_json_schema(), indent=2))
    else:
        text = json.dumps(envelope_json_schema(), indent=2)
        if args.out == "-":
            print(text)
        else:
            Path(args.out).write_text(text + "\n")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    serve_inbox(
        model_settings_from(args),
        args.inbox,
        args.outbox,
        cron=args.cron,
        interval=args.interval,
        webhook_url=args.webhook,
        name=args.name,
        options=RunOptions(global_limit=args.global_limit),
    )
    return EXIT_OK


def cmd_trigger(args: argparse.Namespace) -> int:
    params: dict[str, str] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param wants K=V, got {item!r}")
        params[key] = value
    return trigger(args.deployment, params, wait=args.wait)


def cmd_dev(args: argparse.Namespace) -> int:
    if args.dev_command == "tiny-model":
        print(build_tiny_model(args.dir))
        return EXIT_OK
    return serve_main(args.model, args.host, args.port, args.device)


COMMANDS = {
    "plan": cmd_plan,
    "run": cmd_run,
    "schemas": cmd_schemas,
    "serve": cmd_serve,
    "trigger": cmd_trigger,
    "dev": cmd_dev,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"docvl: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except DocvlError as exc:
        print(f"docvl: [{exc.code}] {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("docvl: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: no traceback at the user
        if args.debug:
            raise
        print(
            f"docvl: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
