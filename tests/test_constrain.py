"""llguidance as a LogitsProcessor: random weights still produce schema-valid JSON for bounded
schemas."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import jsonschema
import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field

from docvl.pipeline.model.constrain import JsonConstrainer, json_grammar
from docvl.pipeline.model.qwen import eos_token_ids, load_tokenizer

pytestmark = pytest.mark.model


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=12)
    quantity: int = Field(ge=0, le=50)
    price: float = Field(ge=0, le=1000, multiple_of=0.01)


class Invoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: Literal["EUR", "USD", "GBP"]
    paid: bool
    items: list[Item] = Field(max_length=3)
    pages: list[int] = Field(max_length=4)


ARRAY_OF_ENUMS: dict[str, Any] = {
    "type": "array",
    "items": {"enum": ["red", "green", "blue"]},
    "minItems": 1,
    "maxItems": 5,
}
BOUNDED_NUMBERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "number", "minimum": -1, "maximum": 1, "multipleOf": 0.25},
        "page": {"type": "integer", "minimum": 1, "maximum": 300},
    },
    "required": ["score", "page"],
    "additionalProperties": False,
}
NESTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 16},
        "author": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 10},
                "age": {"type": "integer", "minimum": 0, "maximum": 120},
            },
            "required": ["name", "age"],
            "additionalProperties": False,
        },
        "kind": {"enum": ["report", "invoice", "letter"]},
    },
    "required": ["title", "author", "kind"],
    "additionalProperties": False,
}


def _outside_strings(text: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)


def _bounded(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic schemas leave pages/item lists' integers unbounded: bound them for a random
    model."""
    schema["$defs"]["Item"]["properties"]["name"]["maxLength"] = 12
    schema["properties"]["pages"]["items"] = {"type": "integer", "minimum": 1, "maximum": 999}
    return schema


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[Any, Any, JsonConstrainer]:
    from transformers import Qwen3VLForConditionalGeneration

    model_dir = tiny_model_dir
    tokenizer = load_tokenizer(str(model_dir))
    model = Qwen3VLForConditionalGeneration.from_pretrained(str(model_dir)).eval()
    vocab = int(model.get_output_embeddings().weight.shape[0])
    return model, tokenizer, JsonConstrainer(tokenizer, eos_token_ids(tokenizer), vocab_size=vocab)


def _generate(
    tiny: tuple[Any, Any, JsonConstrainer], schema: dict[str, Any], seed: int, sample: bool = True
) -> str:
    model, tokenizer, constrainer = tiny
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Reply with JSON."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    torch.manual_seed(seed)
    out = model.generate(
        **ids,
        max_new_tokens=800,
        do_sample=sample,
        temperature=1.0 if sample else None,
        top_k=0,
        top_p=1.0,
        eos_token_id=constrainer.eos_token_ids,
        pad_token_id=tokenizer.pad_token_id,
        logits_processor=[constrainer.processor(schema)],
    )
    new = out[0, ids["input_ids"].shape[1] :].tolist()
    assert new[-1] == constrainer.eos_token_ids[0], "the grammar must end the reply with <|im_end|>"
    return str(tokenizer.decode(new[:-1], skip_special_tokens=True))


@pytest.mark.parametrize(
    "schema", [ARRAY_OF_ENUMS, BOUNDED_NUMBERS, NESTED], ids=["enum-array", "numbers", "nested"]
)
def test_random_weights_produce_valid_json(
    tiny: tuple[Any, Any, JsonConstrainer], schema: dict[str, Any]
) -> None:
    for seed in range(4):
        text = _generate(tiny, schema, seed)
        jsonschema.validate(json.loads(text), schema)
        assert not re.search(r"\s", _outside_strings(text)), text


def test_pydantic_schema_validates_with_pydantic(tiny: tuple[Any, Any, JsonConstrainer]) -> None:
    schema = _bounded(Invoice.model_json_schema())
    for seed in range(3):
        text = _generate(tiny, schema, seed)
        Invoice.model_validate_json(text)


def test_greedy_is_valid_and_has_no_free_whitespace(tiny: tuple[Any, Any, JsonConstrainer]) -> None:
    text = _generate(tiny, NESTED, 0, sample=False)
    value = json.loads(text)
    jsonschema.validate(value, NESTED)
    assert not re.search(r"\s", _outside_strings(text)), text


def test_property_order_follows_schema() -> None:
    reordered = {**NESTED, "properties": dict(reversed(list(NESTED["properties"].items())))}
    assert json_grammar(NESTED) != json_grammar(reordered)


def test_validate_helper(tiny: tuple[Any, Any, JsonConstrainer]) -> None:
    constrainer = tiny[2]
    assert constrainer.validate(BOUNDED_NUMBERS, '{"score":0.75,"page":3}')
    # llguidance quirk: with multipleOf 0.25 a fraction is written with 2 decimals ("0.50", not
    # "0.5").
    assert constrainer.validate(BOUNDED_NUMBERS, '{"score":0.50,"page":3}')
    assert not constrainer.validate(
        BOUNDED_NUMBERS, '{"score": 0.75, "page": 3}'
    )  # free whitespace
    assert not constrainer.validate(BOUNDED_NUMBERS, '{"score":2,"page":3}')  # above maximum
    assert not constrainer.validate(BOUNDED_NUMBERS, '{"score":0.3,"page":3}')  # not a multiple
    assert not constrainer.validate(BOUNDED_NUMBERS, '{"score":0.75}')  # incomplete


def _reference_allowed(bitmask: Any, vocab_size: int) -> list[bool]:
    """The bitmask decoded bit by bit: token ``i`` is bit ``i % 32`` of 32-bit word ``i // 32``."""
    words = [int(w) & 0xFFFFFFFF for w in bitmask[0]]
    return [bool((words[i // 32] >> (i % 32)) & 1) for i in range(vocab_size)]


def test_fast_mask_equals_a_bit_by_bit_decode_at_every_step(
    tiny: tuple[Any, Any, JsonConstrainer],
) -> None:
    """Along a valid reply, the processor's in-place mask keeps exactly the scores of the tokens
    the bitmask allows (decoded bit by bit), the matcher accepts each kept token and rejects a
    sample of the masked ones, and the columns past the vocabulary are masked."""
    _, tokenizer, constrainer = tiny
    reply = '{"title":"Q3 report","author":{"name":"Ann","age":42},"kind":"invoice"}'
    tokens = [*constrainer.ll_tokenizer.tokenize_str(reply), constrainer.eos_token_ids[0]]
    processor = constrainer.processor(NESTED)
    vocab = constrainer.vocab_size
    ids = tokenizer("Reply with JSON.", return_tensors="pt")["input_ids"]
    generator = torch.Generator().manual_seed(0)
    steps = 0
    for token in tokens:
        scores = torch.randn((1, vocab + 7), generator=generator)
        before = scores.clone()
        out = processor(ids, scores)
        expected = _reference_allowed(processor._bitmask, vocab)
        kept = torch.isfinite(out[0, :vocab])
        assert kept.tolist() == expected
        assert torch.equal(out[0, :vocab][kept], before[0, :vocab][kept])
        assert bool(torch.isneginf(out[0, vocab:]).all())
        allowed_ids = [i for i, ok in enumerate(expected) if ok]
        assert token in allowed_ids
        matcher = processor.matcher
        eos = constrainer.eos_token_ids[0]
        # validate_tokens never accepts the end token; the mask allows it once the JSON is done.
        assert all(matcher.validate_tokens([i]) == 1 for i in allowed_ids[:200] if i != eos)
        assert (eos in allowed_ids) == bool(matcher.is_accepting())
        forbidden = [i for i, ok in enumerate(expected) if not ok]
        picks = torch.randint(len(forbidden), (200,), generator=generator).tolist()
        sample = [forbidden[j] for j in picks]
        assert all(matcher.validate_tokens([i]) == 0 for i in sample)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        steps += 1
    assert steps > 10
    assert processor.matcher.is_accepting()  # the reply is complete: only the end token was left


def test_the_mask_is_the_same_for_every_score_dtype(tiny: tuple[Any, Any, JsonConstrainer]) -> None:
    """float32 scores are masked through numpy, bfloat16 through torch: the same tokens stay."""
    _, tokenizer, constrainer = tiny
    ids = tokenizer("Reply with JSON.", return_tensors="pt")["input_ids"]
    kept = []
    for dtype in (torch.float32, torch.bfloat16):
        processor = constrainer.processor(ARRAY_OF_ENUMS)
        scores = torch.zeros((1, constrainer.vocab_size + 3), dtype=dtype)
        out = processor(ids, scores)
        assert out.dtype == dtype
        kept.append(torch.isfinite(out[0]).nonzero().flatten().tolist())
    assert kept[0] == kept[1]
    assert 0 < len(kept[0]) < 10


def test_llguidance_tokenizer_without_the_copy_matches_llguidance_hf(
    tiny: tuple[Any, Any, JsonConstrainer],
) -> None:
    """The tokenizer built from the serialised Rust tokenizer (no padding or truncation to switch
    off, so no copy) tokenizes like ``llguidance.hf.from_tokenizer``'s; a tokenizer with padding
    set goes through llguidance's copy and is left as it was."""
    import llguidance.hf

    from docvl.pipeline.model.constrain import _ll_tokenizer

    _, tokenizer, constrainer = tiny
    reference = llguidance.hf.from_tokenizer(
        tokenizer, n_vocab=constrainer.vocab_size, eos_token=constrainer.eos_token_ids[0]
    )
    ours = constrainer.ll_tokenizer
    assert ours.vocab_size == reference.vocab_size and ours.eos_token == reference.eos_token
    text = 'Ünïcode 12345 {"a": [1.5, null]} 東京 👍\n\t  end'
    assert ours.tokenize_str(text) == reference.tokenize_str(text)
    padded = tokenizer.backend_tokenizer.__class__.from_str(tokenizer.backend_tokenizer.to_str())
    padded.enable_padding(length=8)
    wrapper = type("Wrapper", (), {"backend_tokenizer": padded, "eos_token_id": 0})()
    copied: list[Any] = []
    real_from_tokenizer = llguidance.hf.from_tokenizer

    def from_tokenizer(hf_tokenizer: Any, **kwargs: Any) -> Any:
        copied.append(hf_tokenizer)
        return real_from_tokenizer(hf_tokenizer, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(llguidance.hf.transformers, "PreTrainedTokenizerFast", type(wrapper))
        mp.setattr(llguidance.hf, "from_tokenizer", from_tokenizer)
        built = _ll_tokenizer(wrapper, None, constrainer.eos_token_ids[0])
    assert copied == [wrapper]  # the padded tokenizer went through llguidance's copy
    assert built.tokenize_str(text) == reference.tokenize_str(text)
    assert padded.padding is not None  # llguidance switched padding off on its copy only
