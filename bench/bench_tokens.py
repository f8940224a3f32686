"""P3: planned prompt tokens vs the processor's real count, for every page of the corpus.

    .venv/bin/python bench/bench_tokens.py [--corpus ../shared/corpus] [--only NAME ...]

For each page of each corpus document (PDFs and slide decks; the ``bad/`` folder is skipped) the
prompt the planner builds for it (document header, page marker, page image at the planned size,
text layer, a task instruction, system prompt and chat template) is counted three ways and compared
with ``len(input_ids)`` from the Qwen3-VL processor (the tiny checkpoint's, which has the real
vocabulary, template and image settings):

* ``offline``: :class:`~docvl.pipeline.plan.qwen_tokenizer.QwenTokenizer` (dashscope's vocabulary +
  tiktoken), what a plan for a hub id or an OpenAI-compatible server uses;
* ``checkpoint``: the checkpoint's ``Qwen2Tokenizer`` (tokenizer.json on disk);
* ``estimate``: no tokenizer (the fallback for other model families), for reference.

The processor gets a blank image of the planned size for each page: its count depends on the size
only. Target: 0 tokens off for ``offline`` and ``checkpoint`` on every page.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from PIL import Image  # noqa: E402

from docvl.pipeline.dev.tiny import build_tiny_model  # noqa: E402
from docvl.pipeline.ingest.load import load_document  # noqa: E402
from docvl.pipeline.model.qwen import load_processor, load_tokenizer  # noqa: E402
from docvl.pipeline.plan.count import TokenCounter  # noqa: E402
from docvl.pipeline.plan.planner import page_content  # noqa: E402
from docvl.pipeline.plan.prompt import ImagePart, Part, document_header, hf_messages  # noqa: E402
from docvl.pipeline.plan.qwen_tokenizer import offline_tokenizer  # noqa: E402
from docvl.pipeline.settings import Settings  # noqa: E402

INSTRUCTION = "Summarise the document as JSON with a title, a summary and key points citing pages."


@dataclass
class Row:
    document: str
    pages: int
    real: int
    off_offline: int
    off_checkpoint: int
    estimate: int
    pages_off: int


def real_count(processor: Any, content: list[Part]) -> int:
    shown = [
        ImagePart(p.doc, p.page, p.height, p.width, Image.new("RGB", (p.width, p.height), "white"))
        if isinstance(p, ImagePart)
        else p
        for p in content
    ]
    batch = processor.apply_chat_template(
        hf_messages(shown, INSTRUCTION),
        tokenize=True,
        return_dict=True,
        add_generation_prompt=True,
        return_tensors="pt",
    )
    return int(batch["input_ids"].shape[1])


def measure(
    path: Path, settings: Settings, counters: dict[str, TokenCounter], processor: Any
) -> Row:
    row = Row(path.name, 0, 0, 0, 0, 0, 0)
    with load_document(path, settings) as doc:
        header = document_header(1, path.name, doc.page_count)
        for info in doc.pages:
            content = [header, *page_content(0, info, doc.kind, settings)]
            real = real_count(processor, content)
            offline = counters["offline"].prompt(content, INSTRUCTION)
            checkpoint = counters["checkpoint"].prompt(content, INSTRUCTION)
            row.pages += 1
            row.real += real
            row.off_offline += abs(offline - real)
            row.off_checkpoint += abs(checkpoint - real)
            row.estimate += counters["estimate"].prompt(content, INSTRUCTION)
            row.pages_off += offline != real or checkpoint != real
    return row


def table(rows: list[Row]) -> str:
    lines = [
        "| document | pages | real tokens | offline: off | checkpoint: off | pages off "
        "| estimate / real |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r.estimate / r.real if r.real else 0.0
        lines.append(
            f"| {r.document} | {r.pages} | {r.real:,} | {r.off_offline} | {r.off_checkpoint} "
            f"| {r.pages_off} | {ratio:.2f} |"
        )
    fields = list(Row.__annotations__)[1:]
    total = Row("**all**", *(sum(getattr(r, f) for r in rows) for f in fields))
    ratio = total.estimate / max(total.real, 1)
    lines.append(
        f"| {total.document} | {total.pages} | {total.real:,} | {total.off_offline} "
        f"| {total.off_checkpoint} | {total.pages_off} | {ratio:.2f} |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--only", nargs="*", help="file names to measure (default: all)")
    args = parser.parse_args()
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_model(Path(tmp) / "tiny")
        processor = load_processor(str(tiny))
        counters = {
            "offline": TokenCounter(offline_tokenizer()),
            "checkpoint": TokenCounter(load_tokenizer(str(tiny))),
            "estimate": TokenCounter(),
        }
        paths = [
            p
            for p in sorted(args.corpus.glob("*/*"))
            if p.parent.name != "bad" and p.suffix in (".pdf", ".pptx")
        ]
        if args.only:
            paths = [p for p in paths if p.name in args.only]
        rows = []
        start = time.perf_counter()
        for path in paths:
            try:
                rows.append(measure(path, settings, counters, processor))
            except Exception as exc:  # a deck LibreOffice cannot convert here: say so, go on
                print(f"skipped {path.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            print(f"{path.name}: done at {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(table(rows))


if __name__ == "__main__":
    main()
