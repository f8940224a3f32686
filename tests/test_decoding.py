"""The decode loop's contract with a scripted stand-in for the model: what it feeds each forward,
what the processors see, where it stops. (Equality with transformers' ``generate`` on the real
Qwen3-VL classes, greedy and sampled, is in ``test_backends_transformers.py``.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from docvl.pipeline.model.decoding import decode

VOCAB = 8
EOS = 7


@dataclass
class Cache:
    """A KV cache by length only."""

    length: int

    def get_seq_length(self) -> int:
        return self.length


@dataclass
class ScriptedModel:
    """Stands in for a causal LM's forward: the next token is ``script[k]`` at the k-th forward
    (its logit 1, every other 0). It records each forward's input ids and grows the cache by
    them, as a real forward with ``use_cache=True`` does."""

    script: list[int]
    device: str = "cpu"
    inputs: list[list[int]] = field(default_factory=list)

    def __call__(
        self, *, input_ids: Any, cache: Cache, use_cache: bool, logits_to_keep: int
    ) -> Any:
        assert use_cache and logits_to_keep == 1
        self.inputs.append(input_ids[0].tolist())
        cache.length += int(input_ids.shape[1])
        logits = torch.zeros((1, 1, VOCAB))
        logits[0, 0, self.script[len(self.inputs) - 1]] = 1.0
        return SimpleNamespace(logits=logits)


def test_prefills_the_uncached_suffix_then_one_token_a_forward() -> None:
    model = ScriptedModel([3, 4, 5, 6, 2])
    seen: list[list[int]] = []

    def spy(input_ids: Any, scores: Any) -> Any:
        seen.append(input_ids[0].tolist())
        return scores

    new = decode(
        model, Cache(2), [10, 11, 12, 13], [spy], max_new_tokens=4, eos_ids={EOS}, sample=False
    )
    assert new == [3, 4, 5, 6]  # max_new_tokens: no forward after the last token
    assert model.inputs == [[12, 13], [3], [4], [5]]
    assert seen == [
        [10, 11, 12, 13],
        [10, 11, 12, 13, 3],
        [10, 11, 12, 13, 3, 4],
        [10, 11, 12, 13, 3, 4, 5],
    ]


def test_stops_at_eos_and_keeps_it() -> None:
    model = ScriptedModel([3, EOS, 5])
    new = decode(model, Cache(1), [1, 2], [], max_new_tokens=10, eos_ids={EOS}, sample=False)
    assert new == [3, EOS]
    assert len(model.inputs) == 2


def test_processors_choose_in_order() -> None:
    model = ScriptedModel([3, 3])

    def forbid_three(input_ids: Any, scores: Any) -> Any:
        scores[0, 3] = -torch.inf
        return scores

    def favour_five(input_ids: Any, scores: Any) -> Any:
        return scores + torch.nn.functional.one_hot(torch.tensor([5]), VOCAB)

    new = decode(
        model,
        Cache(1),
        [1, 2],
        [forbid_three, favour_five],
        max_new_tokens=2,
        eos_ids={EOS},
        sample=False,
    )
    assert new == [5, 5]


def test_sampling_draws_from_the_processed_distribution() -> None:
    torch.manual_seed(0)
    model = ScriptedModel([0] * 200)

    def only_two_and_four(input_ids: Any, scores: Any) -> Any:
        keep = torch.full_like(scores, -torch.inf)
        keep[0, 2] = keep[0, 4] = 0.0
        return keep

    new = decode(
        model, Cache(1), [1, 2], [only_two_and_four], max_new_tokens=200, eos_ids={EOS}, sample=True
    )
    assert set(new) == {2, 4}
    assert 60 < new.count(2) < 140


def test_a_cache_holding_the_whole_prompt_is_refused() -> None:
    with pytest.raises(ValueError, match="holds 2 of 2"):
        decode(
            ScriptedModel([3]), Cache(2), [1, 2], [], max_new_tokens=1, eos_ids={EOS}, sample=False
        )
