"""Prompt token counting: exact with the model's tokenizer, a documented estimate without it.

Exact mode renders the same chat template the model sees (see :mod:`pipeline.plan.prompt`) and adds
each image's pad tokens, so a window's count equals ``len(input_ids)`` from the processor.

Estimate mode (no tokenizer on disk, e.g. planning for the hub model offline): one token per 3 UTF-8
bytes of text, rounded up per piece. Qwen's tokenizer averages about 4 bytes per token on English
prose and about 2.5-3 on code, tables and non-Latin scripts, so the estimate errs on the high side
and packed windows stay under the limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pipeline.ingest.geometry import VISION_WRAP_TOKENS, image_tokens
from pipeline.plan.prompt import SYSTEM_PROMPT, ImagePart, Part, TextPart, hf_messages

ESTIMATE_BYTES_PER_TOKEN = 3
#: Chat framing without a tokenizer: <|im_start|>role\n ... <|im_end|>\n for two turns + generation
#: prompt.
ESTIMATE_FRAMING_TOKENS = 16


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
            return math.ceil(len(text.encode("utf-8")) / ESTIMATE_BYTES_PER_TOKEN)
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
