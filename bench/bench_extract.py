"""Extraction recall and cost: docvl against the one-call baseline, on the same model double.

    .venv/bin/python bench/bench_extract.py [--budgets 16384 4096] [--out bench/RESULTS-extract.md]

The model is pipeline/dev/double.py's ``TextLayerModel``: it answers from the text layers of the
pages in its prompt and stops at ``max_tokens`` with ``finish_reason: length``, as a server does.
The documents and their truth come from pipeline/dev/synth.py.

* ``baseline``: ExtractBench's open-weight baseline: every page in one call, the schema as
  ``response_format``, ``max_tokens`` = the output budget. A reply cut off by the limit keeps the
  records that were complete before the cut (a lenient reading: a strict JSON parser gets none).
* ``docvl``: the engine (``Engine.analyze``): output-aware segments, split on ``length``,
  completeness re-asks.

Recall counts truth records (by their printed line) found in the output; extra records are the
others: duplicates, and a record cut off mid-way (the baseline's last one).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from docvl.pipeline.dev import synth  # noqa: E402
from docvl.pipeline.dev.double import TextLayerModel  # noqa: E402
from docvl.pipeline.engine import Engine  # noqa: E402
from docvl.pipeline.engine.windows import attach_images  # noqa: E402
from docvl.pipeline.ingest.load import load_document  # noqa: E402
from docvl.pipeline.plan.count import TokenCounter  # noqa: E402
from docvl.pipeline.plan.planner import window_content  # noqa: E402
from docvl.pipeline.result import Span  # noqa: E402
from docvl.pipeline.settings import Settings  # noqa: E402
from docvl.pipeline.tasks.specs import task_specs  # noqa: E402

RECORDS = {"purchase_order": "lines", "invoice": "line_items", "tables": "rows"}
#: The default page images (150 DPI, at most 1,280 tokens a page): what a real run sends.
RENDER: dict[str, Any] = {}


@dataclass
class Row:
    budget: int
    document: str
    runner: str
    recall: float
    extra: int
    requests: int
    input_tokens: int
    output_tokens: int
    seconds: float


def salvage(text: str) -> dict[str, Any]:
    """The JSON object of a reply cut off mid-way, up to its last complete value."""
    for end in range(len(text), 0, -1):
        if text[end - 1] not in '}]"0123456789el':
            continue
        head = text[:end]
        stack = []
        in_string = escaped = False
        for ch in head:
            if in_string:
                escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
            elif ch == '"':
                in_string = True
            elif ch in "{[":
                stack.append("}" if ch == "{" else "]")
            elif ch in "}]" and stack:
                stack.pop()
        if in_string:
            continue
        try:
            value = json.loads(head + "".join(reversed(stack)))
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def score(records: list[dict[str, Any]], truth: list[dict[str, Any]]) -> tuple[float, int]:
    want = Counter(str(r.get("quote")) for r in truth)
    got = Counter(str(r.get("quote")) for r in records if isinstance(r, dict))
    found = sum(min(n, got[q]) for q, n in want.items())
    return found / max(1, sum(want.values())), sum(max(0, got[q] - want[q]) for q in got)


def baseline(path: Path, settings: Settings) -> tuple[dict[str, Any], TextLayerModel, float]:
    model = TextLayerModel()
    [spec] = task_specs(settings)
    t0 = time.perf_counter()
    with load_document(path, settings) as doc:
        spans = [Span(doc=0, first_page=1, last_page=doc.page_count)]
        content = attach_images([doc], window_content([doc], spans, settings), settings)
        pages = list(range(1, doc.page_count + 1))
        [gen] = model.generate(content, [spec.request(settings.temperature, pages=pages)])
    return salvage(gen.text), model, time.perf_counter() - t0


def run(name: str, path: Path, truth: dict[str, Any], schema: str, budget: int) -> list[Row]:
    settings = Settings(tasks=("extract",), schema_name=schema, max_output_tokens=budget, **RENDER)
    field = RECORDS[schema]
    data, model, seconds = baseline(path, settings)
    recall, dup = score(data.get(field) or [], truth[field])
    gen = model.calls[0].generation
    rows = [
        Row(budget, name, "baseline", recall, dup, 1, gen.input_tokens, gen.output_tokens, seconds)
    ]
    model = TextLayerModel()
    t0 = time.perf_counter()
    [env] = Engine(settings, model, TokenCounter()).analyze([path])
    seconds = time.perf_counter() - t0
    records = (env.extraction.data.get(field) or []) if env.extraction else []
    recall, dup = score(records, truth[field])
    u = env.usage
    rows.append(
        Row(
            budget, name, "docvl", recall, dup, u.requests, u.input_tokens, u.output_tokens, seconds
        )
    )
    return rows


def table(rows: list[Row]) -> str:
    out = [
        "| output budget | document | runner | recall | extra records | requests | input tokens "
        "| output tokens | seconds | input vs baseline |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {(r.budget, r.document): r for r in rows if r.runner == "baseline"}
    for r in rows:
        ratio = r.input_tokens / max(1, base[(r.budget, r.document)].input_tokens)
        out.append(
            f"| {r.budget:,} | {r.document} | {r.runner} | {r.recall:.2%} | {r.extra} | "
            f"{r.requests} | {r.input_tokens:,} | {r.output_tokens:,} | {r.seconds:.2f} | "
            f"{ratio:.2f}x |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=[16_384, 4_096],
        help="output budgets (max_tokens) to run at",
    )
    ap.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = ap.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (generate, schema) in synth.DOCUMENTS.items():
            path = Path(tmp) / f"{name}.pdf"
            truth = generate(path)
            for budget in args.budgets:
                rows += run(name, path, truth, schema, budget)
    text = table(rows)
    print(text)
    if args.out:
        command = "    .venv/bin/python bench/bench_extract.py --out bench/RESULTS-extract.md"
        args.out.write_text(f"# Extraction: docvl vs one call\n\n{command}\n\n{text}\n")


if __name__ == "__main__":
    main()
