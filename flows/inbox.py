"""``docvl serve``: a served deployment that turns an inbox of documents into an outbox of JSON
results.

Each scheduled run scans the inbox, claims documents whose ``sha256 + settings.fingerprint()`` is
not in the outbox ledger, processes them with the same tasks as ``analyze_batch`` (caches and the
concurrency limit included), delivers one JSON file per document atomically, optionally POSTs each
record to a webhook, and writes a manifest of what the run picked up. See
:mod:`docvl.flows.delivery` for the outbox layout.

Run it without the CLI (tests, debugging)::

    python -m docvl.flows.inbox --inbox IN --outbox OUT --interval 10 [--backend-factory module:fn]
"""

# No `from __future__ import annotations`: Prefect resolves flow parameter types (Settings) at load
# time.

import argparse
import importlib
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from prefect import State, flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from docvl.flows import report
from docvl.flows.analyze import Runner, thread_runner
from docvl.flows.delivery import Ledger, deliver, post_record, write_manifest
from docvl.flows.limits import DEFAULT_LIMIT_NAME
from docvl.flows.options import RunOptions
from docvl.flows.server import api_server
from docvl.flows.store import shown_name
from docvl.pipeline.engine import Unit
from docvl.pipeline.engine.prepare import sha256_file
from docvl.pipeline.errors import UsageError
from docvl.pipeline.policy import is_final
from docvl.pipeline.result import ResultEnvelope
from docvl.pipeline.settings import Settings

log = logging.getLogger(__name__)
IGNORED_SUFFIXES = (".tmp", ".part", ".crdownload", ".partial", ".swp")


def scan(inbox: Path, min_age_s: float) -> list[Path]:
    """Regular files in the inbox (recursively), skipping hidden, temporary and still-changing
    files."""
    now = time.time()
    found = []
    for path in sorted(inbox.rglob("*")):
        rel = path.relative_to(inbox)
        if any(part.startswith(".") for part in rel.parts) or path.name.endswith(IGNORED_SUFFIXES):
            continue
        try:
            if path.is_file() and not path.is_symlink() and now - path.stat().st_mtime >= min_age_s:
                found.append(path)
        except OSError:  # gone since the listing, or unreadable: the next scan sees it again
            continue
    return found


def _hashes(ledger: Ledger, files: list[Path]) -> dict[Path, str]:
    cache = ledger.load_stat_cache()
    out: dict[Path, str] = {}
    fresh: dict[str, list[Any]] = {}
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        hit = cache.get(str(path))
        if hit and hit[:3] == stamp:
            out[path] = str(hit[3])
        else:
            sha = sha256_file(path)
            if sha is None:
                continue
            out[path] = sha
        fresh[str(path)] = [*stamp, out[path]]
    if fresh != cache:
        ledger.save_stat_cache(fresh)
    return out


def _run_id() -> str:
    return str(flow_run.id or f"local-{uuid.uuid4()}")


def _deliver(
    out_dir: Path,
    path: Path,
    sha: str,
    key: str,
    env: ResultEnvelope,
    run_id: str,
    webhook_url: str | None,
    ledger: Ledger,
) -> dict[str, Any]:
    """Write one document's result into the outbox, POST it, mark it done: its manifest fields."""
    record = env.model_dump(mode="json")
    target = deliver(out_dir, path, sha, record)
    row: dict[str, Any] = {"output": target.name}
    if webhook_url:
        hook = post_record(webhook_url, record)
        row["webhook"] = {"ok": hook.ok, "attempts": hook.attempts, "status": hook.status_code}
        if not hook.ok:
            log.warning("webhook failed for %s: %s", shown_name(path), hook.error)
    entry = {"input": str(path), "output": target.name, "run": run_id, "status": env.status}
    ledger.mark_done(key, {**entry, "time": time.time()})
    return row


@flow(name="docvl-inbox", task_runner=thread_runner(16))
def inbox_flow(
    inbox: str,
    outbox: str,
    settings: Settings,
    webhook_url: str | None = None,
    options: RunOptions | None = None,
    min_age_s: float = 1.0,
    claim_ttl_s: float = 6 * 3600,
) -> State[Any]:
    """One scheduled pass over the inbox. The run's state holds the counts (picked, delivered,
    failed, retry) and ends Failed when a document failed or waits for a retry, unless
    ``options.allow_partial``. Every pick-up, delivery and failure is logged to the Prefect API."""
    logger = get_run_logger()
    options = options or RunOptions()
    runner = Runner(settings, options)
    in_dir, out_dir = Path(inbox), Path(outbox)
    ledger = Ledger(out_dir, ttl_s=claim_ttl_s)
    run_id = _run_id()
    hashes = _hashes(ledger, scan(in_dir, min_age_s))
    picked: list[tuple[Path, str, str]] = []
    skipped_duplicates: list[dict[str, Any]] = []
    seen_keys: set[str] = set()
    for path, sha in hashes.items():
        [key] = runner.engine.record_keys(Unit((path,), (sha,)))
        assert key is not None
        if ledger.done(key) is not None:
            continue
        if key in seen_keys:  # same content twice in this scan: processed once, noted once
            skipped_duplicates.append({"input": str(path), "sha256": sha, "status": "duplicate"})
            continue
        if ledger.claim(key, run_id):
            seen_keys.add(key)
            picked.append((path, sha, key))
    if not picked:
        return _final({"picked": 0, "delivered": 0, "failed": 0, "retry": 0}, options)
    logger.info("docvl inbox: %d new document(s)", len(picked))
    for path, _, _ in picked:
        logger.info("picked up %s", shown_name(path))
    rows: list[dict[str, Any]] = []
    delivered = failed = retry = 0
    try:
        envelopes, cached = runner.run([p for p, _, _ in picked])
        for (path, sha, key), env in zip(picked, envelopes, strict=True):
            row: dict[str, Any] = {"input": str(path), "sha256": sha, "status": env.status}
            rows.append(row)
            why = "; ".join(f"{e.code}: {e.message}" for e in env.errors[:3])
            if not is_final(env.errors):  # backend trouble: leave it for the next scheduled run
                logger.warning("%s failed, retried next run: %s", shown_name(path), why)
                row["delivered"] = None
                retry += 1
                continue
            try:  # one document's delivery never stops the others'
                row.update(_deliver(out_dir, path, sha, key, env, run_id, webhook_url, ledger))
            except Exception as exc:
                logger.warning(
                    "delivery of %s failed: %s: %s", shown_name(path), type(exc).__name__, exc
                )
                row.update(delivered=None, error=f"{type(exc).__name__}: {exc}")
                retry += 1
                continue
            delivered += 1
            if env.status == "failed":
                failed += 1
                logger.warning("%s failed (its record is delivered): %s", shown_name(path), why)
            else:
                logger.info("delivered %s: %s", shown_name(path), env.status)
        if options.artifacts:
            report.publish(envelopes, cached, title=f"docvl inbox run: {len(envelopes)} documents")
    finally:
        for _, _, key in picked:
            ledger.release(key)
    write_manifest(out_dir, run_id, rows + skipped_duplicates)
    counts = {"picked": len(picked), "delivered": delivered, "failed": failed, "retry": retry}
    return _final(counts, options)


def _final(counts: dict[str, int], options: RunOptions) -> State[Any]:
    """Completed, or Failed when a document failed or is left for a retry (the counts are the
    state's data and its message)."""
    message = ", ".join(f"{name} {n}" for name, n in counts.items())
    if (counts["failed"] or counts["retry"]) and not options.allow_partial:
        return Failed(message=message, data=counts)
    return Completed(message=message, data=counts)


def serve_inbox(
    settings: Settings,
    inbox: Path | str,
    outbox: Path | str,
    cron: str | None = None,
    interval: float | None = None,
    webhook_url: str | None = None,
    name: str | None = None,
    *,
    options: RunOptions | None = None,
    limit: int | None = 1,
) -> None:
    """Serve ``docvl-inbox/<name>`` on a cron or interval schedule; blocks until interrupted
    (SIGINT/SIGTERM).

    Each run executes in a subprocess of this one (Prefect runner). The encryption password is not
    stored in the deployment's parameters: served runs take it from ``DOCVL_PASSWORD`` in this
    process's env. ``limit`` caps the flow runs this server executes at once (1: a slow run delays
    the next scan instead of doubling the model load; claims keep overlapping runs correct either
    way). ``global_limit`` names a Prefect global concurrency limit for model calls shared with
    other processes (opt-in).
    """
    if (cron is None) == (interval is None):
        raise UsageError("serve needs exactly one of --cron EXPR or --interval SECONDS")
    in_dir, out_dir = Path(inbox).resolve(), Path(outbox).resolve()
    if not in_dir.is_dir():
        raise UsageError(f"inbox {in_dir} is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"cache_dir": Path(settings.cache_dir).resolve()})
    params: dict[str, Any] = {
        "inbox": str(in_dir),
        "outbox": str(out_dir),
        "settings": settings.model_dump(mode="json"),
        "webhook_url": webhook_url,
        "options": (options or RunOptions()).model_dump(mode="json"),
    }
    with api_server():  # schedules need a real API server: the configured one, else a local one
        inbox_flow.serve(
            name=name or "docvl-inbox",
            cron=cron,
            interval=interval,
            parameters=params,
            description=f"docvl: {in_dir} -> {out_dir}",
            limit=limit,
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m docvl.flows.inbox", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--inbox", required=True, type=Path)
    p.add_argument("--outbox", required=True, type=Path)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--cron")
    g.add_argument("--interval", type=float)
    p.add_argument("--webhook")
    p.add_argument("--name")
    p.add_argument("--backend-factory", help="module:callable(settings) -> ModelBackend (tests)")
    p.add_argument(
        "--global-limit",
        help=f"Prefect global concurrency limit for model calls ({DEFAULT_LIMIT_NAME})",
    )
    args = p.parse_args(argv)
    serve_inbox(
        Settings(**{}),
        args.inbox,
        args.outbox,
        cron=args.cron,
        interval=args.interval,
        webhook_url=args.webhook,
        name=args.name,
        options=RunOptions(backend_factory=args.backend_factory, global_limit=args.global_limit),
    )


if __name__ == "__main__":
    # Run main() of the importable module (docvl.flows.inbox, not __main__), so the deployment's
    # entrypoint resolves to it.
    importlib.import_module("docvl.flows.inbox").main()
