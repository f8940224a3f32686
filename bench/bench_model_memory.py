"""Peak RSS of the transformers backend on one full default window of a 619-page document.

    .venv/bin/python bench/bench_model_memory.py [--pages 619] [--chunk-pixels N]

A synthetic 619-page A4 PDF (text pages) is planned with the default settings (150 DPI, at most
1,280 tokens a page, 262,144-token context) for a summary; the first (largest) window is rendered
and sent to :class:`~docvl.pipeline.model.transformers_backend.TransformersBackend` on the tiny
model (one prefill + 4 new tokens). Prints the window's size and the process's peak RSS.
``--chunk-pixels`` sets ``ENCODE_CHUNK_PIXELS``; a huge value (``1e15``) encodes the whole window
at once, as the backend did before the chunking (the "before" figure).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import pymupdf  # noqa: E402

from docvl.pipeline.dev.tiny import build_tiny_model  # noqa: E402
from docvl.pipeline.engine.windows import attach_images  # noqa: E402
from docvl.pipeline.ingest.load import load_document  # noqa: E402
from docvl.pipeline.model import transformers_backend, vision  # noqa: E402
from docvl.pipeline.model.base import GenerationRequest  # noqa: E402
from docvl.pipeline.model.qwen import load_tokenizer  # noqa: E402
from docvl.pipeline.plan.count import TokenCounter  # noqa: E402
from docvl.pipeline.plan.planner import plan_paths, window_content  # noqa: E402
from docvl.pipeline.settings import Settings  # noqa: E402

INSTRUCTION = "Summarise the document."


def synthetic_pdf(path: Path, pages: int) -> Path:
    doc = pymupdf.open()
    for n in range(1, pages + 1):
        page = doc.new_page(width=595, height=842)
        for line in range(40):
            page.insert_text(
                (50, 60 + 18 * line), f"Page {n}, line {line}: quarterly figures {n * line}"
            )
    doc.save(path)
    doc.close()
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=619)
    parser.add_argument("--chunk-pixels", type=float, default=None)
    args = parser.parse_args()
    if args.chunk_pixels is not None:
        vision.ENCODE_CHUNK_PIXELS = int(args.chunk_pixels)
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_model(Path(tmp) / "tiny")
        pdf = synthetic_pdf(Path(tmp) / "long.pdf", args.pages)
        counter = TokenCounter(load_tokenizer(str(tiny)))
        plan = plan_paths([pdf], settings, counter, {"summary": INSTRUCTION})
        window = plan.documents[0].windows[0]
        backend = transformers_backend.TransformersBackend(str(tiny))
        with load_document(pdf, settings) as doc:
            content = attach_images([doc], window_content([doc], window.spans, settings), settings)
        print(
            f"window 1 of {len(plan.documents[0].windows)}: pages {window.first_page}-"
            f"{window.last_page}, {window.input_tokens:,} input tokens; "
            f"RSS before the model call {peak_rss_mb():,.0f} MB"
        )
        start = time.perf_counter()
        [generation] = backend.generate(content, [GenerationRequest(INSTRUCTION, max_new_tokens=4)])
        print(
            f"chunk pixels {vision.ENCODE_CHUNK_PIXELS:,}: "
            f"{generation.input_tokens:,} tokens in {time.perf_counter() - start:.0f} s, "
            f"peak RSS {peak_rss_mb():,.0f} MB"
        )


if __name__ == "__main__":
    main()
