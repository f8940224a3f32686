"""Prefix caching, the decode loop and token log-probabilities for the transformers backend."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
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
            self.values.append(self.previous[int(input_ids[0, -1])])
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


def decode(
    model: Any,
    cache: Any,
    ids: Sequence[int],
    processors: Sequence[Callable[[Any, Any], Any]],
    *,
    max_new_tokens: int,
    eos_ids: Collection[int],
    sample: bool,
) -> list[int]:
    """What ``generate`` does for one sequence, as a plain loop around the model's forward: the new
    tokens, an EOS id (kept) ending them, at most ``max_new_tokens``.

    ``cache`` holds the first tokens of ``ids`` (at least one) and the model its M-RoPE
    ``rope_deltas``: the rest of ``ids`` is prefilled in one forward, then one token a forward,
    positions from the model's own incremental path (cache length + ``rope_deltas``). Each step's
    last-position logits, as float32, go through ``processors`` (``generate``'s logits-processor
    protocol: the grammar mask, the log-probability recorder, then for sampling temperature, top-k
    and top-p), then ``argmax``, or a ``multinomial`` draw from their softmax: ``generate``'s greedy
    and sampling steps, so outputs and random draws are the same. What it leaves out is
    ``generate``'s per-token bookkeeping (input preparation, stopping criteria, cache and mask
    updates): 1.4-1.8 ms a token on this CPU, about 5% of a realistic forward (bench/RESULTS.md,
    P7)."""
    import torch

    length = len(ids)
    if not 0 <= cache.get_seq_length() < length:
        raise ValueError(f"the cache holds {cache.get_seq_length()} of {length} prompt tokens")
    seq = torch.empty((1, length + max_new_tokens), dtype=torch.long, device=model.device)
    seq[0, :length] = torch.tensor(ids, dtype=torch.long)
    step = seq[:, cache.get_seq_length() : length]
    new: list[int] = []
    while len(new) < max_new_tokens:
        logits = model(input_ids=step, cache=cache, use_cache=True, logits_to_keep=1).logits
        scores = logits[:, -1, :].to(dtype=torch.float32)
        so_far = seq[:, :length]
        for process in processors:
            scores = process(so_far, scores)
        if sample:
            token = int(torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)[0, 0])
        elif scores.device.type == "cpu":
            # The same first index of the maximum as torch.argmax, in 0.02 ms instead of 0.33
            # over a 151,936-wide row on this CPU (torch splits the small job across threads).
            token = int(scores.numpy()[0].argmax())
        else:
            token = int(torch.argmax(scores, dim=-1)[0])
        seq[0, length] = token
        length += 1
        new.append(token)
        if new[-1] in eos_ids:
            break
        step = seq[:, length - 1 : length]
    return new
