"""Prompt token counting: exact with a tokenizer, an upper-bound estimate without one.

Exact mode renders the same chat template the model sees (see :mod:`docvl.pipeline.plan.prompt`) and
adds each image's pad tokens, so a window's count equals ``len(input_ids)`` from the processor. For
Qwen3-VL the tokenizer is always available: the checkpoint's own, or the same vocabulary rebuilt
offline (:mod:`docvl.pipeline.plan.qwen_tokenizer`, chosen by
``docvl.pipeline.model.qwen.load_tokenizer``).

Estimate mode (another model family, no tokenizer on disk): the text is split with Qwen's
pre-tokenizer pattern (each digit, punctuation run and word is its own piece) and each piece costs
``ceil(UTF-8 bytes / 3)`` tokens, at least one. A byte-level BPE never joins two pieces, so every
digit and punctuation mark counts one token, and words average about 4 bytes per token: on every
page of the corpus this is at or above the real Qwen count (tests/test_count.py), where the old
whole-text ``bytes / 3`` under-counted a numeric table by 37%.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

import regex

from docvl.pipeline.ingest.geometry import VISION_WRAP_TOKENS, image_tokens
from docvl.pipeline.plan.prompt import SYSTEM_PROMPT, ImagePart, Part, TextPart, hf_messages
from docvl.pipeline.plan.qwen_tokenizer import PRETOKENIZE_PATTERN

ESTIMATE_BYTES_PER_TOKEN = 3
#: Chat framing without a tokenizer: <|im_start|>role\n ... <|im_end|>\n for two turns + generation
#: prompt.
ESTIMATE_FRAMING_TOKENS = 16
_PIECES = regex.compile(PRETOKENIZE_PATTERN)


def estimate_tokens(text: str) -> int:
    """An upper bound on a byte-level BPE's count: per pre-tokenizer piece ``ceil(bytes / 3)``."""
    pieces = _PIECES.findall(unicodedata.normalize("NFC", text))
    return sum(-(-len(piece.encode("utf-8")) // ESTIMATE_BYTES_PER_TOKEN) for piece in pieces)


class TokenCounter:
    def __init__(self, tokenizer: Any | None = None) -> None:
        self.tokenizer = tokenizer

    @property
    def exact(self) -> bool:
        return self.tokenizer is not None

    def text(self, text: str) -> int:
        if not text:
            return 0
        if self.tokenizer is None:
            return estimate_tokens(text)
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def part(self, part: Part) -> int:
        if isinstance(part, TextPart):
            return self.text(part.text)
        return image_tokens(part.height, part.width) + VISION_WRAP_TOKENS

    def content(self, parts: Sequence[Part]) -> int:
        return sum(self.part(p) for p in parts)

    def framing(self, instruction: str) -> int:
        """Tokens of the whole prompt except the content parts: system, template, instruction."""
        if self.tokenizer is None:
            return ESTIMATE_FRAMING_TOKENS + self.text(SYSTEM_PROMPT) + self.text(instruction)
        return self.prompt([], instruction)

    def prompt(self, content: Sequence[Part], instruction: str) -> int:
        """The whole prompt counted at once (exact mode: through the chat template)."""
        if self.tokenizer is None:
            return self.framing(instruction) + self.content(content)
        rendered = self.tokenizer.apply_chat_template(
            hf_messages(content, instruction), tokenize=False, add_generation_prompt=True
        )
        n_text = len(self.tokenizer.encode(rendered, add_special_tokens=False))
        # Each image renders as one <|image_pad|>; the processor expands it to N pads.
        return n_text + sum(
            image_tokens(p.height, p.width) - 1 for p in content if isinstance(p, ImagePart)
        )
