"""P6 shared prefill and P7 time outside the forward pass, transformers backend on the tiny model.

    .venv/bin/python bench/bench_model.py [--model DIR] [--doc samples/invoice.pdf]
        [--rounds 3] [--threads N] [--text-size HIDDEN:LAYERS] [--generate-loop]

The tiny random Qwen3-VL (``docvl dev tiny-model DIR``; built into a temporary directory when
``--model`` is not given) runs on CPU with ``decoder_bounds`` (random weights finish a reply only
on the bounded schema). One backend is loaded once and warmed up; then each round runs, side by
side, summary, extraction and a question apart and the three together. Before every run the
backend's kept prefix cache is dropped, so every run prefills from scratch.

Model time is measured with forward hooks (:mod:`meter`): the wall seconds inside the model's
top-level ``forward`` and its vision encoder, not cProfile (which inflates Python-heavy code).

* P6: a run's PROMPT time = building the shared prefix (the envelope's ``timings.prefill``: image
  processing, vision encoder, the prefix's forward) + the forwards of each request's own suffix
  (its instruction, prefilled by the decode loop). The three together vs each apart: ratio
  against the largest and the smallest single task (median over rounds). Target <= 1.3x one
  task's.
* P7: in the three-task run, (wall inside ``backend.generate`` - forward time) / forward time,
  with the processor, the grammar mask, log-probabilities and detokenising broken out; validation
  of the replies (outside the backend) and the whole run less loading and rendering alongside.
  Target < 5%. With ``--generate-loop`` each round also runs the three tasks with the decode
  loop swapped for transformers' ``generate`` (what the backend called before stop 17), side by
  side.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from common import REPO, machine, table
from meter import ForwardMeter, Stopwatch, median

from docvl.api import analyze
from docvl.pipeline.model import constrain, decoding, transformers_backend
from docvl.pipeline.model.factory import make_backend
from docvl.pipeline.model.transformers_backend import TransformersBackend
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks import repair

QUESTION = "What is the total amount due?"
TASKS: dict[str, dict[str, Any]] = {
    "summary": {"tasks": ("summary",)},
    "extract": {"tasks": ("extract",), "schema_name": "invoice"},
    "ask": {"tasks": ("ask",), "question": QUESTION},
}
ALL_THREE: dict[str, Any] = {
    "tasks": ("summary", "extract", "ask"),
    "schema_name": "invoice",
    "question": QUESTION,
}
#: Stopwatch buckets outside the forward pass: (owner, attribute, bucket).
BUCKETS = ("processor", "grammar mask", "log-probabilities", "detokenise", "validation")


@dataclass
class Measured:
    """One run of :func:`analyze` under the meters."""

    label: str
    wall: float  # the whole analyze call
    load_render: float  # loading and rendering the document (P1's part)
    prefix: float  # the envelope's prefill: building the shared prefix
    prefills: int
    suffix: float  # forwards of the requests' own suffixes (>1 token, inside generate)
    decode: float  # forwards of one token
    forward: float  # every forward (vision encoder included)
    backend: float  # wall inside backend.generate
    prefix_tokens: int
    input_tokens: int
    output_tokens: int
    buckets: dict[str, float] = field(default_factory=dict)

    @property
    def prompt(self) -> float:
        """Seconds to process this run's prompts: the shared prefix plus each request's suffix."""
        return self.prefix + self.suffix


def ratios(shared: float, apart: dict[str, float]) -> tuple[float, float]:
    """``shared`` against the largest and against the smallest of ``apart``."""
    return shared / max(apart.values()), shared / min(apart.values())


def share(outside: float, model: float) -> float:
    """Time outside the model as a fraction of model time."""
    return outside / model if model > 0 else float("inf")


def p6_table(rounds: list[dict[str, Measured]]) -> tuple[str, float, float]:
    """Median-over-rounds rows for each run and the shared run's prompt-time ratios against the
    largest and the smallest single task."""
    names = list(rounds[0])
    rows = []
    for name in names:
        runs = [r[name] for r in rounds]
        rows.append(
            [
                name,
                f"{median([m.prompt for m in runs]):.3f}",
                f"{median([m.prefix for m in runs]):.3f}",
                f"{median([m.suffix for m in runs]):.3f}",
                str(runs[0].prefills),
                f"{runs[0].prefix_tokens:,}",
                f"{runs[0].input_tokens:,}",
                f"{median([m.decode for m in runs]):.2f}",
            ]
        )
    per_round = [
        ratios(r["all three"].prompt, {n: m.prompt for n, m in r.items() if n != "all three"})
        for r in rounds
    ]
    vs_largest = median([a for a, _ in per_round])
    vs_smallest = median([b for _, b in per_round])
    head = [
        "run",
        "prompt s",
        "prefix s",
        "suffixes s",
        "prefills",
        "prefix tokens",
        "input tokens",
        "decode fwd s",
    ]
    return table(head, rows), vs_largest, vs_smallest


#: The buckets timed inside ``backend.generate`` (validation runs outside it).
INSIDE = ("processor", "grammar mask", "log-probabilities", "detokenise")


def p7_rows(runs: list[Measured], loop: str) -> tuple[list[list[str]], float]:
    """Rows of the time outside the forward pass (medians over the three-task runs: seconds,
    share of model time, milliseconds per generated token) and the median share
    (backend.generate wall - forward) / forward."""

    def row(label: str, values: list[float]) -> list[str]:
        shares = [share(v, m.forward) for v, m in zip(values, runs, strict=True)]
        per_token = [1000 * v / max(m.output_tokens, 1) for v, m in zip(values, runs, strict=True)]
        return [label, f"{median(values):.3f}", f"{median(shares):.2%}", f"{median(per_token):.2f}"]

    outside = [m.backend - m.forward for m in runs]
    rows = [row("model forward (all calls)", [m.forward for m in runs])]
    rows.append(row("backend.generate wall - forward", outside))
    for bucket in INSIDE:
        rows.append(row(f"  of which {bucket}", [m.buckets[bucket] for m in runs]))
    rest = [o - sum(m.buckets[b] for b in INSIDE) for o, m in zip(outside, runs, strict=True)]
    rows.append(row(f"  of which the rest ({loop})", rest))
    rows.append(row("validation (outside the backend)", [m.buckets["validation"] for m in runs]))
    engine = [m.wall - m.load_render - m.forward for m in runs]
    rows.append(row("whole run - load/render - forward", engine))
    shares = [share(o, m.forward) for o, m in zip(outside, runs, strict=True)]
    return rows, median(shares)


class Bench:
    """One loaded backend, its meters, and a run of :func:`analyze` under them."""

    def __init__(self, model: Path, doc: Path, cache: Path) -> None:
        self.model, self.doc, self.cache = model, doc, cache
        backend = make_backend(self.settings(**ALL_THREE))
        if not isinstance(backend, TransformersBackend):
            raise SystemExit(f"expected the transformers backend, got {backend.name}")
        self.backend = backend
        inner = backend.model.model
        self.meter = ForwardMeter({"model": backend.model, "vision": inner.visual})
        self.watch = Stopwatch()
        image_processor = type(backend.processor.image_processor)
        for owner, attr, bucket in [
            (image_processor, "__call__", "processor"),
            (TransformersBackend, "render", "processor"),
            (TransformersBackend, "_tokenize", "processor"),
            (constrain.LLGuidanceLogitsProcessor, "__call__", "grammar mask"),
            (decoding.LogprobRecorder, "__call__", "log-probabilities"),
            (decoding.LogprobRecorder, "finish", "log-probabilities"),
            (TransformersBackend, "_pieces", "detokenise"),
            (repair, "validate_reply", "validation"),
            (TransformersBackend, "generate", "backend"),
        ]:
            self.watch.wrap(owner, attr, bucket)
        build = backend._build_prefix

        def tagged_build(*args: Any, **kwargs: Any) -> Any:
            self.meter.tag = "prefix"
            try:
                return build(*args, **kwargs)
            finally:
                self.meter.tag = ""

        backend._build_prefix = tagged_build  # type: ignore[method-assign]

    def settings(self, **task: Any) -> Settings:
        return Settings(
            model=str(self.model),
            backend="transformers",
            decoder_bounds=True,
            cache_dir=self.cache,
            **task,
        )

    def run(self, label: str, **task: Any) -> Measured:
        # Every run prefills from scratch: the backend keeps the last window's KV cache.
        self.backend._prefix = None
        self.watch.reset()
        since = self.meter.mark()
        start = time.perf_counter()
        [envelope] = analyze([self.doc], self.settings(**task), self.backend)
        wall = time.perf_counter() - start
        if envelope.status != "ok":
            raise SystemExit(f"bench run failed: {envelope.errors}")
        calls = self.meter.calls[since:]
        t = envelope.timings
        prefix = self.backend._prefix
        m = Measured(
            label=label,
            wall=wall,
            load_render=t.load + t.render,
            prefix=t.prefill,
            prefills=t.prefills,
            suffix=sum(c.seconds for c in calls if c.tokens > 1 and c.tag != "prefix"),
            decode=sum(c.seconds for c in calls if c.tokens == 1),
            forward=sum(c.seconds for c in calls),
            backend=self.watch.totals["backend"],
            prefix_tokens=len(prefix.ids) if prefix is not None else 0,
            input_tokens=envelope.usage.input_tokens,
            output_tokens=envelope.usage.output_tokens,
            buckets={b: self.watch.totals[b] for b in BUCKETS},
        )
        print(
            f"  {label}: {wall:.1f} s wall, prompt {m.prompt:.2f} s (prefix {m.prefix:.2f}, "
            f"suffixes {m.suffix:.2f}), forward {m.forward:.2f} s, backend {m.backend:.2f} s, "
            f"{m.output_tokens} tokens out",
            file=sys.stderr,
            flush=True,
        )
        return m

    def close(self) -> None:
        self.watch.restore()
        self.backend.close()


def report(
    measured: list[dict[str, Measured]], generate_runs: list[Measured], load_before: str
) -> str:
    """The P6 and P7 sections for the rounds measured so far."""
    p6_rows, vs_largest, vs_smallest = p6_table(measured)
    apart = [[m.prompt for n, m in r.items() if n != "all three"] for r in measured]
    apart_ratio = median([sum(a) / max(a) for a in apart])
    p6 = (
        "### P6: three tasks sharing one prefill (medians over rounds)\n\n"
        + p6_rows
        + f"\n\nShared prompt time / one task's: **{vs_largest:.2f}x** the largest, "
        f"**{vs_smallest:.2f}x** the smallest (target <= 1.3); the three run apart: "
        f"{apart_ratio:.2f}x the largest."
    )
    loops = [("docvl's decode loop", [r["all three"] for r in measured])]
    if generate_runs:
        loops.append(("transformers' generate", generate_runs))
    p7 = "### P7: time outside the forward pass (forward hooks, the three-task run)"
    for loop, runs in loops:
        rows7, p7_share = p7_rows(runs, loop)
        p7 += (
            f"\n\n#### Decoding with {loop}\n\n"
            + table(["part", "seconds", "share of model time", "ms per generated token"], rows7)
            + f"\n\n(backend.generate wall - forward) / forward: **{p7_share:.1%}** "
            "(target < 5%)."
        )
    return (
        f"{len(measured)} rounds; before: {load_before}; after: {machine()}\n\n" + p6 + "\n\n" + p7
    )


def generate_decode(
    model: Any,
    cache: Any,
    ids: Sequence[int],
    processors: Sequence[Callable[[Any, Any], Any]],
    *,
    max_new_tokens: int,
    eos_ids: Collection[int],
    sample: bool,
) -> list[int]:
    """:func:`docvl.pipeline.model.decoding.decode` done by transformers' ``generate`` (greedy),
    as the backend did before stop 17: P7's side-by-side column."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    if sample:
        raise SystemExit("the generate column decodes greedily only")
    ids_t = torch.tensor([ids], dtype=torch.long, device=model.device)
    config = GenerationConfig(  # type: ignore[no-untyped-call]
        max_new_tokens=max_new_tokens,
        do_sample=False,
        temperature=1.0,
        top_p=1.0,
        top_k=50,
        eos_token_id=list(eos_ids),
        pad_token_id=list(eos_ids)[-1],
    )
    out = model.generate(
        input_ids=ids_t,
        attention_mask=torch.ones_like(ids_t),
        cache=cache,
        generation_config=config,
        logits_processor=LogitsProcessorList(processors),
    )
    new: list[int] = out[0, len(ids) :].tolist()
    return new


def run(model: Path, doc: Path, rounds: int, generate_loop: bool) -> str:
    """Warm up, then ``rounds`` rounds; the report so far is printed after each round."""
    load_before = machine()
    measured: list[dict[str, Measured]] = []
    generate_runs: list[Measured] = []
    with tempfile.TemporaryDirectory() as cache_dir:
        bench = Bench(model, doc, Path(cache_dir))
        try:
            with bench.meter:
                # First-call costs; the extraction's grammar is built in round 1's first run,
                # before any three-task run (the extraction alone is the long reply).
                bench.run("warm-up", tasks=("summary", "ask"), question=QUESTION)
                for i in range(rounds):
                    print(f"round {i + 1}/{rounds}", file=sys.stderr, flush=True)
                    r = {f"{n} alone": bench.run(n, **task) for n, task in TASKS.items()}
                    r["all three"] = bench.run("all three", **ALL_THREE)
                    measured.append(r)
                    if generate_loop:
                        with mock.patch.object(transformers_backend, "decode", generate_decode):
                            generate_runs.append(bench.run("all three, generate", **ALL_THREE))
                    if i + 1 < rounds:
                        print(report(measured, generate_runs, load_before) + "\n", flush=True)
        finally:
            bench.close()
    return report(measured, generate_runs, load_before)


def scaled_model(src: Path, out: Path, hidden: int, layers: int) -> Path:
    """A copy of the tiny checkpoint ``src`` whose text decoder is ``hidden`` wide and ``layers``
    deep (random weights, 64-wide heads, a 4:1 grouped KV, MLP 3x), with the same vocabulary,
    tokenizer, processor and vision tower. Its forward pass costs what a real model's costs on a
    GPU, so P7's share is read against a realistic forward (the per-token work outside it does not
    depend on the decoder's size, only on the vocabulary's). Written to ``out``."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    out.mkdir(parents=True)
    for item in src.iterdir():
        if item.is_file() and item.suffix != ".safetensors":
            shutil.copy(item, out / item.name)
    config = json.loads((src / "config.json").read_text())
    heads = max(1, hidden // 64)
    config["text_config"].update(
        hidden_size=hidden,
        num_hidden_layers=layers,
        intermediate_size=3 * hidden,
        head_dim=64,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 4),
    )
    config["text_config"]["rope_parameters"]["mrope_section"] = [12, 10, 10]  # sums to 64 / 2
    config["vision_config"]["out_hidden_size"] = hidden
    scaled = Qwen3VLConfig.from_dict(config)
    Qwen3VLForConditionalGeneration(scaled).save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path)
    parser.add_argument("--doc", type=Path, default=REPO / "samples" / "invoice.pdf")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument(
        "--text-size",
        metavar="HIDDEN:LAYERS",
        help="measure a copy of the model with a wider, deeper random text decoder "
        "(e.g. 256:8: a forward of about 30 ms a token here, like the 8B on a GPU)",
    )
    parser.add_argument(
        "--generate-loop",
        action="store_true",
        help="also run the three tasks decoded by transformers' generate, side by side (P7)",
    )
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="docvl-bench-model-") as scratch:
        if args.model is None:
            from docvl.pipeline.dev.tiny import build_tiny_model

            args.model = build_tiny_model(Path(scratch) / "tiny")
        if args.text_size:
            hidden, layers = (int(v) for v in args.text_size.split(":"))
            args.model = scaled_model(args.model, Path(scratch) / "scaled", hidden, layers)
        print(run(args.model, args.doc, args.rounds, args.generate_loop) + "\n")


if __name__ == "__main__":
    main()
