"""P6 shared prefill and P7 time outside the forward pass, transformers backend on the tiny model.

    .venv/bin/python bench/bench_model.py [--model DIR] [--doc samples/invoice.pdf]

The tiny random Qwen3-VL (``docvl dev tiny-model DIR``; built into a temporary directory when
``--model`` is not given) runs on CPU with ``decoder_bounds`` (random weights finish a reply only
on the bounded schema). One backend is loaded once and warmed up; then, side by side:

* P6: summary + extraction + a question in one run (one prefill of the pages, shared by the three
  requests) vs the three run apart. Reported: prefill seconds and prefills, from the envelopes'
  ``timings``. Target: shared prefill <= 1.3x one task's prefill.
* P7: the shared run again under cProfile. Model time is the cumulative time of the model's
  ``forward`` (prefill and every decoding step); outside it: everything else in the run (processor,
  chat template, grammar masks, parsing and validation, bookkeeping) except loading and rendering
  the document, which P1 measures. Target: < 5% of model time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, table

from docvl.api import analyze
from docvl.pipeline.model.factory import make_backend
from docvl.pipeline.result import ResultEnvelope
from docvl.pipeline.settings import Settings

QUESTION = "What is the total amount due?"
TASKS: dict[str, dict[str, Any]] = {
    "summary": {"tasks": ("summary",)},
    "extract": {"tasks": ("extract",), "schema_name": "invoice"},
    "ask": {"tasks": ("ask",), "question": QUESTION},
}


def settings_for(model: Path, cache: Path, **task: Any) -> Settings:
    return Settings(
        model=str(model),
        backend="transformers",
        decoder_bounds=True,
        cache_dir=cache,
        **task,
    )


def one(model: Path, cache: Path, backend: Any, doc: Path, **task: Any) -> ResultEnvelope:
    # Every run prefills from scratch: the backend keeps the last window's KV cache (the shared
    # prefix), which would otherwise make each run after the first free.
    backend._prefix = None
    start = time.perf_counter()
    [envelope] = analyze([doc], settings_for(model, cache, **task), backend)
    if envelope.status != "ok":
        raise SystemExit(f"bench run failed: {envelope.errors}")
    t = envelope.timings
    print(
        f"  {task.get('tasks')}: {time.perf_counter() - start:.1f} s wall, "
        f"prefill {t.prefill:.2f} s ({t.prefills}), generate {t.generate:.2f} s",
        file=sys.stderr,
        flush=True,
    )
    return envelope


def cumulative(stats: pstats.Stats, match: Any) -> float:
    """Largest cumulative time among the profiled functions ``match(file, name)`` accepts (the
    outermost call of a recursive or nested function carries all of it)."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    times = [ct for (file, _line, name), (_cc, _nc, _tt, ct, _) in raw.items() if match(file, name)]
    return max(times, default=0.0)


def run(model: Path, doc: Path) -> str:
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = Path(cache_dir)
        all_three = {
            "tasks": ("summary", "extract", "ask"),
            "schema_name": "invoice",
            "question": QUESTION,
        }
        backend = make_backend(settings_for(model, cache, **all_three))
        try:
            one(model, cache, backend, doc, **TASKS["extract"])  # warm-up: first-call costs
            apart = {name: one(model, cache, backend, doc, **task) for name, task in TASKS.items()}
            shared = one(model, cache, backend, doc, **all_three)
            profiler = cProfile.Profile()
            profiler.enable()
            profiled = one(model, cache, backend, doc, **all_three)
            profiler.disable()
        finally:
            backend.close()
    rows = [
        [
            f"{name} alone",
            f"{e.timings.prefill:.3f}",
            str(e.timings.prefills),
            f"{e.timings.generate:.3f}",
            f"{e.usage.input_tokens:,}",
        ]
        for name, e in apart.items()
    ]
    t = shared.timings
    rows.append(
        [
            "all three, one prefill",
            f"{t.prefill:.3f}",
            str(t.prefills),
            f"{t.generate:.3f}",
            f"{shared.usage.input_tokens:,}",
        ]
    )
    single = max(e.timings.prefill for e in apart.values())
    apart_sum = sum(e.timings.prefill for e in apart.values())
    p6 = (
        "### P6: three tasks sharing one prefill\n\n"
        + table(["run", "prefill s", "prefills", "generate s", "input tokens"], rows)
        + f"\n\nShared prefill / one task's (largest) prefill: **{t.prefill / single:.2f}x** "
        f"(target <= 1.3); the three apart: {apart_sum / single:.2f}x."
    )

    stats = pstats.Stats(profiler)
    total = cumulative(stats, lambda f, n: n == "analyze" and f.endswith("docvl/api.py"))
    forward = cumulative(stats, lambda f, n: n == "forward" and f.endswith("modeling_qwen3_vl.py"))
    load = cumulative(stats, lambda f, n: n == "load_document")
    render = cumulative(stats, lambda f, n: n == "attach_images")
    buckets = {
        "processor (image + text)": cumulative(stats, lambda f, n: n == "processor_inputs")
        + cumulative(stats, lambda f, n: n == "_build_prefix"),
        "grammar (llguidance)": cumulative(stats, lambda f, n: "llguidance" in f),
        "validation (jsonschema)": cumulative(stats, lambda f, n: n == "iter_errors"),
    }
    outside = total - forward - load - render
    rows7 = [["model forward (all calls)", f"{forward:.3f}", "100%"]]
    rows7 += [[k, f"{v:.3f}", f"{v / forward:.1%}"] for k, v in buckets.items()]
    rows7.append(
        ["all outside forward (excl. load, render)", f"{outside:.3f}", f"{outside / forward:.1%}"]
    )
    rows7.append(["load + render (P1)", f"{load + render:.3f}", f"{(load + render) / forward:.1%}"])
    p7 = (
        "### P7: time outside the forward pass (cProfile, one window, three tasks)\n\n"
        + table(["part", "seconds", "share of model time"], rows7)
        + f"\n\nOutside / model time: **{outside / forward:.1%}** (target < 5%); windows: "
        f"{len(profiled.plan.windows)}, wall {total:.2f} s under the profiler."
    )
    return p6 + "\n\n" + p7


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path)
    parser.add_argument("--doc", type=Path, default=REPO / "samples" / "invoice.pdf")
    args = parser.parse_args()
    if args.model is None:
        from docvl.pipeline.dev.tiny import build_tiny_model

        args.model = Path(tempfile.mkdtemp(prefix="docvl-bench-tiny-"))
        build_tiny_model(args.model)
    print(run(args.model, args.doc) + "\n")


if __name__ == "__main__":
    main()
