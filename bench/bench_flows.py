"""Batch of small documents with and without Prefect: plain loop over
``docvl.pipeline.engine.stages.analyze_document`` vs the ``analyze_batch`` flow (ephemeral server),
scripted backend (no model), optional simulated latency.

    .venv/bin/python bench/bench_flows.py [--docs 50] [--pages 2] [--latency 0.0 0.1]
        [--concurrency 4]

Rows: plain loop; flow cold (empty caches, local limit only); flow cold with the Prefect global
concurrency limit; flow rerun (every document from the record store). Server startup is measured
separately (first flow run of the process) and excluded from the rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import docvl.flows  # noqa: E402,F401  (offline env before prefect)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=50)
    ap.add_argument("--pages", type=int, default=2)
    ap.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.1])
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="docvl-bench-prefect-"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

    import flowkit
    from prefect import flow
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from docvl.flows.analyze import analyze_batch, envelopes_of
    from docvl.flows.options import RunOptions
    from docvl.pipeline.engine import Engine
    from docvl.pipeline.plan.count import TokenCounter

    work = Path(tempfile.mkdtemp(prefix="docvl-bench-"))
    paths = flowkit.make_pdfs(work / "in", args.docs, pages=args.pages)

    @flow
    def noop() -> None:
        return None

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        t0 = time.perf_counter()
        noop()
        startup = time.perf_counter() - t0
        rows: list[tuple[str, float, float, int]] = []
        for latency in args.latency:
            os.environ["DOCVL_TEST_DELAY_S"] = str(latency)
            settings = flowkit.test_settings(
                work / f"cache-{latency}", max_concurrency=args.concurrency
            )
            backend = flowkit.scripted_backend(settings)
            counter = TokenCounter(None)
            flowkit.reset()
            t0 = time.perf_counter()
            plain = [Engine(settings, backend, counter).analyze([p])[0] for p in paths]
            base = time.perf_counter() - t0
            assert all(r.status == "ok" for r in plain), [
                r.errors for r in plain if r.status != "ok"
            ][:1]
            rows.append((f"plain loop, latency {latency}s", base, 1.0, len(flowkit.CALLS)))
            for label, limit, cache in (
                ("flow cold, local limit", None, "a"),
                ("flow cold, + global limit", "docvl-bench", "b"),
                ("flow rerun (records)", None, "a"),
            ):
                run_settings = settings.model_copy(
                    update={"cache_dir": work / f"cache-{latency}-{cache}"}
                )
                flowkit.reset()
                t0 = time.perf_counter()
                options = RunOptions(backend_factory="flowkit:scripted_backend", global_limit=limit)
                state = analyze_batch(
                    [str(p) for p in paths],
                    run_settings,
                    str(work / "out.jsonl"),
                    options,
                    return_state=True,
                )
                res = envelopes_of(state)
                dt = time.perf_counter() - t0
                assert all(r.status == "ok" for r in res)
                rows.append((f"{label}, latency {latency}s", dt, dt / base, len(flowkit.CALLS)))
    print(
        f"{args.docs} documents x {args.pages} pages, max_concurrency {args.concurrency}, "
        f"{os.cpu_count()} CPUs; Prefect server startup (excluded): {startup:.1f} s\n"
    )
    print("| run | seconds | docs/s | vs plain loop | model calls |")
    print("|---|---|---|---|---|")
    for label, dt, ratio, calls in rows:
        print(f"| {label} | {dt:.2f} | {args.docs / dt:.1f} | {ratio:.2f}x | {calls} |")


if __name__ == "__main__":
    main()
