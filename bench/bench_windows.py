"""P4: windows per document vs the minimum, and window fill (the plan only: no model call).

    .venv/bin/python bench/bench_windows.py [--corpus ../shared/corpus] [--context 262144 32768]

For every corpus PDF and each context size: the windows docvl plans for a summary, the minimum any
split could reach (``ceil(content tokens / (budget - framing))``, a lower bound that ignores page
granularity and per-window headers), and the fill (input tokens planned / (windows * budget)),
where budget = context window - the reply's reserve (``max_output_tokens``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from common import CORPUS, table

from docvl.api import plan
from docvl.pipeline.settings import Settings


def run(corpus: Path, contexts: list[int]) -> str:
    paths = sorted((corpus / "good").glob("*.pdf")) + sorted((corpus / "scanned").glob("*.pdf"))
    rows = []
    extra = 0
    for context in contexts:
        settings = Settings(context_window=context, max_output_tokens=min(16_384, context // 4))
        budget = settings.context_window - settings.max_output_tokens
        result = plan(paths, settings)
        room = budget - result.framing_tokens
        for doc in result.documents:
            if doc.status != "ok":
                continue
            content = sum(p.image + p.text for p in doc.page_tokens)
            minimum = max(1, math.ceil(content / room))
            planned = len(doc.windows)
            extra += planned - minimum
            fill = doc.input_tokens / (planned * budget) if planned else 0.0
            rows.append(
                [
                    f"{context:,}",
                    Path(doc.path).name,
                    str(doc.pages),
                    f"{content:,}",
                    str(planned),
                    str(minimum),
                    f"{planned / minimum:.2f}x",
                    f"{fill:.0%}",
                ]
            )
    head = [
        "context",
        "document",
        "pages",
        "content tokens",
        "windows",
        "minimum",
        "windows / minimum",
        "fill",
    ]
    return table(head, rows) + f"\n\nWindows above the minimum, all rows: {extra}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--context", type=int, nargs="+", default=[262_144, 32_768])
    args = parser.parse_args()
    print("### P4: windows per document vs the minimum\n")
    print(run(args.corpus, args.context) + "\n")


if __name__ == "__main__":
    main()
