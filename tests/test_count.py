"""Prompt token counts equal what the real transformers Qwen3-VL processor produces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from docvl.pipeline.model.qwen import load_processor, load_tokenizer
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.prompt import (
    ImagePart,
    Part,
    document_header,
    hf_messages,
    page_marker,
    page_text,
)
from docvl.pipeline.plan.qwen_tokenizer import QwenTokenizer, offline_tokenizer

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


@pytest.mark.model
@pytest.mark.parametrize(("sizes", "texts"), CASES)
def test_offline_tokenizer_count_equals_processor(
    tiny_model_dir: Path, sizes: list[tuple[int, int]], texts: list[str]
) -> None:
    """Planning for the hub id (no checkpoint on disk) counts what the real processor counts."""
    processor = load_processor(str(tiny_model_dir))
    counter = TokenCounter(load_tokenizer("Qwen/Qwen3-VL-8B-Instruct"))
    assert counter.exact and isinstance(counter.tokenizer, QwenTokenizer)
    content = window(sizes, texts)
    expected = processor_count(processor, content, INSTRUCTION)
    assert counter.prompt(content, INSTRUCTION) == expected
    assert counter.framing(INSTRUCTION) + counter.content(content) == expected


def test_plans_for_served_qwen_are_exact() -> None:
    for model in ("Qwen/Qwen3-VL-8B-Instruct", "qwen/qwen3-vl-8b-instruct"):
        assert TokenCounter(load_tokenizer(model)).exact
    assert not TokenCounter(load_tokenizer("mistralai/Pixtral-12B-2409")).exact


def test_estimate_counts_each_digit_and_mark() -> None:
    counter = TokenCounter()
    assert counter.text("2024") == 4
    assert counter.text("1,234.56") == 8  # 6 digits + 2 marks, as Qwen counts them
    row = "2024-03-01  12,345  67.8%  Acme Corp\n"
    assert counter.text(row) >= len(offline_tokenizer().encode(row))


NUMERIC = "\n".join(
    f"{i:05d} 2024-{i % 12 + 1:02d}-{i % 28 + 1:02d} {i * 37.5:,.2f} {i % 97}%" for i in range(300)
)
MIXED = [
    NUMERIC,
    "The quick brown fox jumps over the lazy dog. " * 50,
    "Über naïve café — 東京タワー 2.5% 🦙🦙 «ценa» العربية\n\t  " * 20,
    '{"items": [{"qty": 3, "price": 12.5}, {"qty": 10, "price": 0.99}]}' * 20,
    "    def f(x):\n        return x ** 2  # comment\n" * 30,
]


@pytest.mark.parametrize("text", MIXED)
def test_estimate_is_an_upper_bound_of_the_real_count(text: str) -> None:
    assert TokenCounter().text(text) >= len(offline_tokenizer().encode(text))


@pytest.mark.slow
def test_estimate_is_an_upper_bound_on_every_corpus_page(corpus: Path) -> None:
    from test_tokenizer_qwen import corpus_text_layers

    real = offline_tokenizer()
    estimate = TokenCounter()
    for where, text in corpus_text_layers(corpus):
        assert estimate.text(text) >= len(real.encode(text)), where
