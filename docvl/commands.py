"""The work behind ``docvl plan``, ``run``, ``serve`` and ``trigger``.

Each command first checks every option (:func:`model_settings`, the inputs, the output paths), then
imports what it needs: Prefect, torch and transformers load only after the options passed, and
``run`` loads them only when a document has no final record yet.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docvl import outputs
from docvl.flags import build_settings
from docvl.flows import progress, server
from docvl.flows.options import RunOptions
from docvl.flows.report import document_markdown
from docvl.flows.rerun import finished_batch
from docvl.flows.store import atomic_write_jsonl
from docvl.flows.trigger import trigger as start_run
from docvl.inputs import expand_inputs
from docvl.pipeline.errors import UsageError
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.specs import task_specs

EXIT_OK, EXIT_FAILED = 0, 1
#: Backends whose settings :func:`~docvl.pipeline.model.factory.check_settings` never refuses.
IN_PROCESS_BACKENDS = ("transformers", "scripted")


def model_settings(overrides: dict[str, Any]) -> Settings:
    """Settings for commands that call the model: refuse what can never work before touching a
    file (ask without a question, a misspelt schema, the openai backend without a URL)."""
    settings = build_settings(overrides)
    if settings.backend not in IN_PROCESS_BACKENDS:
        # imports every backend (the openai SDK, numpy: 1-3 s); a rerun answered from the record
        # store needs none of them
        from docvl.pipeline.model.factory import check_settings

        check_settings(settings)
    task_specs(settings)
    return settings


def print_plan(plan: Any) -> None:
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


def quiet_hub_progress() -> None:
    """No tqdm bars from transformers or the hub ("Loading weights"): they break the Rich display
    and fill logs, and docvl reports its own progress and closing summary. The variable covers a
    later import; an already imported transformers is told directly."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    hf_logging = sys.modules.get("transformers.utils.logging")
    if hf_logging is not None:
        hf_logging.disable_progress_bar()


def plan(paths: Sequence[str], overrides: dict[str, Any], json_out: bool) -> int:
    settings = build_settings(overrides)
    task_specs(settings)  # a bad task setup is a usage error before any file is read
    files = expand_inputs(paths)
    from docvl.api import plan as make_plan

    result = make_plan(files, settings)
    if json_out:
        print(result.model_dump_json(indent=2))
    else:
        print_plan(result)
    return EXIT_FAILED if any(d.status == "failed" for d in result.documents) else EXIT_OK


@dataclass(frozen=True)
class RunArgs:
    """The options of ``docvl run`` that are not Settings."""

    paths: Sequence[str]
    out: str | None
    output_dir: Path | None
    to: str
    progress: bool | None
    max_failures: int | None
    global_limit: str | None


def run(args: RunArgs, overrides: dict[str, Any]) -> int:
    """``docvl run``. A batch whose documents all have final records is answered from the record
    store without Prefect, torch or transformers (:func:`docvl.flows.rerun.finished_batch`).
    Otherwise the per-batch Prefect server is started first, so that it boots while this process
    imports Prefect and the model libraries; the flow waits for it only when it starts."""
    settings = model_settings(overrides)
    formats = outputs.parse_formats(args.to)
    out = Path(args.out) if args.out not in (None, "-") else None
    outputs.check_output_file(out)
    outputs.check_output_dir(args.output_dir)
    to_stdout = args.out == "-" or (args.out is None and args.output_dir is None)
    files = expand_inputs(args.paths)
    finished = finished_batch(files, settings)
    if finished is not None:
        results, n_cached = finished
        if out is not None:
            atomic_write_jsonl(out, (e.model_dump(mode="json") for e in results))
    else:
        results, n_cached = _compute(args, settings, files, out)
    written: list[str] = [str(out)] if out is not None else []
    if args.output_dir is not None:
        outputs.write_output_dir(args.output_dir, results, formats)
        written.append(f"{args.output_dir}{os.sep} ({len(results)} x {', '.join(formats)})")
    if to_stdout:
        _print_records(results, formats)
        written.append("stdout")
    for line in outputs.summary_lines(results, n_cached, written):
        print(line, file=sys.stderr)
    return EXIT_OK if all(r.status == "ok" for r in results) else EXIT_FAILED


def _compute(
    args: RunArgs, settings: Settings, files: Sequence[Path], out: Path | None
) -> tuple[list[Any], int]:
    """The batch through the Prefect flow: (envelopes, how many came from the record store)."""
    show = sys.stderr.isatty() if args.progress is None else args.progress
    quiet_hub_progress()
    early = None
    if settings.prefect_server != "local" and server.configured_api_url() is None:
        early = server.start_server(batch=True)  # boots during the imports below
    try:
        from docvl.flows.analyze import run_batch

        cached: list[str] = []

        def on_event(kind: str, fields: dict[str, Any]) -> None:
            if kind == "document" and fields.get("cached"):
                cached.append(str(fields.get("path")))

        options = RunOptions(global_limit=args.global_limit, max_failures=args.max_failures)
        with progress.listening(on_event):
            results = run_batch(  # SIGINT/SIGTERM: one line, children stopped, exit 130/143
                files,
                settings,
                out,
                show_progress=show,
                options=options,
                exit_on_signal=True,
                server=early,
            )
        return results, len(cached)
    finally:
        if early is not None:
            server.stop(early.proc)  # stopped by run_batch already, unless it failed before


def _print_records(results: Sequence[Any], formats: Sequence[str]) -> None:
    for record in results:
        if "json" in formats:
            print(record.model_dump_json())
        if "md" in formats:
            print(document_markdown(record) + "\n")


def serve(
    overrides: dict[str, Any],
    inbox: Path,
    outbox: Path,
    cron: str | None,
    interval: float | None,
    webhook: str | None,
    name: str,
    global_limit: str | None,
) -> int:
    settings = model_settings(overrides)
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise UsageError(f"--webhook wants an http:// or https:// URL, got {webhook!r}")
    from docvl.flows.inbox import serve_inbox

    serve_inbox(
        settings,
        inbox,
        outbox,
        cron=cron,
        interval=interval,
        webhook_url=webhook,
        name=name,
        options=RunOptions(global_limit=global_limit),
    )
    return EXIT_OK


def check_deployment(deployment: str, api_url: str | None) -> None:
    """Refuse, in about a second and without Prefect, a deployment the server does not have."""
    flow_name, sep, name = deployment.partition("/")
    if not sep or not flow_name or not name or "/" in name:
        raise UsageError(
            "deployment must be 'flow-name/deployment-name' (e.g. docvl-inbox/docvl-inbox), got "
            f"{deployment!r}"
        )
    if not api_url:
        raise UsageError(
            "docvl trigger needs PREFECT_API_URL (e.g. http://127.0.0.1:4200/api): the server "
            "where the flow is served"
        )
    import httpx

    headers = (
        {"Authorization": f"Bearer {key}"} if (key := os.environ.get("PREFECT_API_KEY")) else {}
    )
    url = f"{api_url.rstrip('/')}/deployments/name/{flow_name}/{name}"
    try:
        response = httpx.get(url, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise UsageError(f"cannot reach the Prefect server at {api_url}: {exc}") from None
    if response.status_code == 404:
        raise UsageError(f"no deployment {deployment!r} on {api_url} (see `prefect deployment ls`)")


def trigger(deployment: str, items: Sequence[str], wait: bool) -> int:
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param wants K=V, got {item!r}")
        params[key] = value
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:  # perhaps in the Prefect profile: ask Prefect (slower, only then)
        from prefect.settings import PREFECT_API_URL

        api_url = PREFECT_API_URL.value()
    check_deployment(deployment, api_url)
    return start_run(deployment, params, wait=wait)
