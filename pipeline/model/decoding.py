"""Prefix caching and token log-probabilities for the transformers backend."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from docvl.pipeline.ingest.packed import digest as image_digest
from docvl.pipeline.plan.prompt import Part, TextPart


def content_key(content: Sequence[Part]) -> str:
    """Digest of what the model sees: texts and image pixels (not doc/page numbers, which are not
    rendered)."""
    digest = hashlib.sha256()
    for part in content:
        if isinstance(part, TextPart):
            digest.update(b"T" + part.text.encode("utf-8") + b"\0")
        else:
            digest.update(f"I{part.height}x{part.width}\0".encode())
            if part.image is not None:
                digest.update(image_digest(part.image))  # a packed page is not decoded
    return digest.hexdigest()


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class Prefix:
    key: str
    ids: list[int]
    cache: Any  # DynamicCache holding exactly len(ids) tokens between requests
    rope_deltas: Any
    image_grid_thw: Any


class LogprobRecorder:
    """A logits processor (last in the list) recording each chosen token's log-probability under
    the scores the processors before it produced (constrained decoding's mask included; sampling's
    temperature/top-k/top-p come after it, so this is the temperature-1 distribution). At each step
    it reads the previous step's choice (the last input id) from the previous log-softmax, so only
    one vocabulary-sized row is kept, never one per step (``output_scores`` would hold every step's
    scores: gigabytes for a 16k-token reply)."""

    def __init__(self) -> None:
        self.previous: Any = None
        self.values: list[Any] = []  # 0-d tensors, synchronised once at the end

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self.previous is not None:
            self.values.append(self.previous[input_ids[0, -1]])
        self.previous = torch.log_softmax(scores[0].float(), dim=-1)
        return scores

    def finish(self, last_token: Any) -> list[float]:
        """Every generated token's log-probability (``last_token`` is the final choice)."""
        import torch

        if self.previous is None:
            return []
        values = [*self.values, self.previous[last_token]]
        self.previous, self.values = None, []
        return [float(v) for v in torch.stack(values).tolist()]
