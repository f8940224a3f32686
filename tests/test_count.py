"""Prompt token counts equal what the real transformers Qwen3-VL processor produces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.model.qwen import load_processor, load_tokenizer
from pipeline.plan.count import TokenCounter
from pipeline.plan.prompt import (
    ImagePart,
    Part,
    document_header,
    hf_messages,
    page_marker,
    page_text,
)

INSTRUCTION = "Summarise the document as JSON with a title, a summary and key points citing pages."


def window(sizes: list[tuple[int, int]], texts: list[str]) -> list[Part]:
    parts: list[Part] = [document_header(1, "report.pdf", len(sizes))]
    for n, ((h, w), text) in enumerate(zip(sizes, texts, strict=True), start=1):
        parts += [page_marker(n), ImagePart(0, n, h, w, Image.new("RGB", (w, h), (250, 250, 250)))]
        layer = page_text(text, 12_000)
        if layer is not None:
            parts.append(layer)
    return parts


def processor_count(processor: Any, content: list[Part], instruction: str) -> int:
    batch = processor.apply_chat_template(
        hf_messages(content, instruction),
        tokenize=True,
        return_dict=True,
        add_generation_prompt=True,
        return_tensors="pt",
    )
    return int(batch["input_ids"].shape[1])


CASES = [
    ([(1760, 1248)], ["Invoice 2024-001\nTotal: 1,234.50 EUR"]),
    (
        [(1056, 1248), (1760, 1248), (320, 320)],
        ["First page.", "", "Über naïve café — 東京 2.5%\n\n  indented"],
    ),
    ([(64, 1024)] * 4, ["a", "b.", "c\n", 'Résumé: {"k": [1, 2]}']),
]


@pytest.mark.model
@pytest.mark.parametrize(("sizes", "texts"), CASES)
def test_window_count_equals_processor(
    tiny_model_dir: Path, sizes: list[tuple[int, int]], texts: list[str]
) -> None:
    processor = load_processor(str(tiny_model_dir))
    counter = TokenCounter(load_tokenizer(str(tiny_model_dir)))
    content = window(sizes, texts)
    expected = processor_count(processor, content, INSTRUCTION)
    assert counter.prompt(content, INSTRUCTION) == expected
    # additive: what the planner sums page by page is the same number
    assert counter.framing(INSTRUCTION) + counter.content(content) == expected


def test_estimate_without_tokenizer_is_documented_rule() -> None:
    counter = TokenCounter()
    assert not counter.exact
    assert counter.text("abcdef") == 2 and counter.text("abcdefg") == 3
    assert counter.text("東京") == 2  # 6 UTF-8 bytes
    assert counter.part(ImagePart(0, 1, 64, 96)) == 2 * 3 + 2
