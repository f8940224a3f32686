"""The transformers backend end to end on the tiny random Qwen3-VL: real processor, real
generate."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from modelkit import Summary, summary_schema, two_pages

from docvl.pipeline.errors import BackendUnavailable
from docvl.pipeline.model.base import GenerationRequest, ModelBackend
from docvl.pipeline.model.factory import make_backend
from docvl.pipeline.model.transformers_backend import TOP_K, TOP_P, TransformersBackend
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.prompt import ImagePart, Part, TextPart, Turn
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.confidence import field_confidence

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(tiny_model_dir))


def uncached_greedy(
    backend: TransformersBackend, content: list[Part], request: GenerationRequest
) -> str:
    """Reference: the processor's own output straight into ``generate``, no cache reuse."""
    inputs = backend.processor_inputs(content, request)
    backend.model.model.rope_deltas = None
    out = backend.model.generate(
        **inputs,
        max_new_tokens=request.max_new_tokens,
        do_sample=False,
        temperature=1.0,
        top_p=1.0,
        top_k=50,
        eos_token_id=backend.eos_ids,
        pad_token_id=backend.tokenizer.pad_token_id,
    )
    new = [t for t in out[0, inputs["input_ids"].shape[1] :].tolist() if t not in backend.eos_ids]
    return str(backend.tokenizer.decode(new, skip_special_tokens=True))


def test_is_a_model_backend(backend: TransformersBackend) -> None:
    assert isinstance(backend, ModelBackend)
    assert backend.name == "transformers"


def test_input_tokens_equal_exact_count(backend: TransformersBackend) -> None:
    content = two_pages()
    request = GenerationRequest("Summarize the document.", max_new_tokens=4)
    generation = backend.generate(content, [request])[0]
    expected = TokenCounter(backend.tokenizer).prompt(content, request.instruction)
    assert generation.input_tokens == expected
    assert (
        generation.input_tokens == backend.processor_inputs(content, request)["input_ids"].shape[1]
    )
    assert sum(isinstance(p, ImagePart) for p in content) == 2


def test_one_prefill_matches_uncached_greedy(backend: TransformersBackend) -> None:
    content = two_pages()
    requests = [
        GenerationRequest("Summarize the document.", max_new_tokens=24),
        GenerationRequest("What is the revenue growth?", max_new_tokens=24),
        GenerationRequest("List the page numbers.", max_new_tokens=16),
    ]
    backend._prefix = None
    generations = backend.generate(content, requests)
    prefix = backend._prefix
    assert prefix is not None
    n_prefix = len(prefix.ids)
    assert generations[0].cached_tokens == 0 and generations[0].timings["prefill_s"] > 0
    assert [g.cached_tokens for g in generations[1:]] == [n_prefix, n_prefix]
    # the prefix is everything before the instruction: all images, most of the prompt
    assert n_prefix > 0.9 * generations[0].input_tokens
    for request, generation in zip(requests, generations, strict=True):
        assert generation.output_tokens <= request.max_new_tokens
        assert generation.text == uncached_greedy(backend, content, request)

    # a re-ask on the same content reuses the kept prefix cache (no new prefill)
    again = GenerationRequest(
        "Summarize the document.",
        max_new_tokens=24,
        turns=(
            Turn(reply=generations[0].text, feedback="That was not JSON. Reply with JSON only."),
        ),
    )
    reask = backend.generate(content, [again])[0]
    assert backend._prefix is prefix
    assert reask.cached_tokens == n_prefix and reask.timings["prefill_s"] == 0.0
    assert reask.input_tokens > generations[0].input_tokens
    assert reask.text == uncached_greedy(backend, content, again)


def test_other_content_gets_a_new_prefill(backend: TransformersBackend) -> None:
    content = two_pages()
    backend.generate(content, [GenerationRequest("Summarize.", max_new_tokens=2)])
    other = [*content[:-1], TextPart("Text layer:\nRevenue fell.\n")]
    generation = backend.generate(other, [GenerationRequest("Summarize.", max_new_tokens=8)])[0]
    assert generation.cached_tokens == 0
    assert generation.text == uncached_greedy(
        backend, other, GenerationRequest("Summarize.", max_new_tokens=8)
    )


def test_constrained_output_validates(backend: TransformersBackend) -> None:
    content = two_pages()
    schema = summary_schema()
    requests = [
        GenerationRequest(
            "Summarize as JSON.", json_schema=schema, max_new_tokens=400, temperature=t
        )
        for t in (0.0, 0.7, 1.0)
    ]
    torch.manual_seed(0)
    for generation in backend.generate(content, requests):
        assert generation.finish_reason == "stop", generation.text
        Summary.model_validate_json(generation.text)


def test_length_finish_reason(backend: TransformersBackend) -> None:
    generation = backend.generate(
        two_pages(), [GenerationRequest("Write a long story.", max_new_tokens=5)]
    )[0]
    assert generation.output_tokens == 5
    assert generation.finish_reason == "length"


def test_text_only_content(backend: TransformersBackend) -> None:
    content: list[Part] = [
        TextPart("<document 1: notes.txt, pages 1-1 of 1>\n"),
        TextPart("Text layer:\nhello\n"),
    ]
    requests = [
        GenerationRequest("Summarize.", max_new_tokens=12),
        GenerationRequest("Title?", max_new_tokens=12),
    ]
    generations = backend.generate(content, requests)
    assert generations[1].cached_tokens > 0
    for request, generation in zip(requests, generations, strict=True):
        assert generation.input_tokens == TokenCounter(backend.tokenizer).prompt(
            content, request.instruction
        )
        assert generation.text == uncached_greedy(backend, content, request)


def test_sampling_draws_what_generate_draws(backend: TransformersBackend) -> None:
    """docvl's decode loop applies generate's sampling warpers in generate's order and draws the
    same way: with the same seed, the same tokens. (A low temperature: the random model's logits
    are nearly flat, so at 0.7 a missing temperature step would draw the same tokens.)"""
    import torch

    content = two_pages()
    request = GenerationRequest("Summarize the document.", max_new_tokens=24, temperature=0.05)
    inputs = backend.processor_inputs(content, request)
    backend.model.model.rope_deltas = None
    torch.manual_seed(1234)
    out = backend.model.generate(
        **inputs,
        max_new_tokens=request.max_new_tokens,
        do_sample=True,
        temperature=0.05,
        top_p=TOP_P,
        top_k=TOP_K,
        eos_token_id=backend.eos_ids,
        pad_token_id=backend.tokenizer.pad_token_id,
    )
    new = [t for t in out[0, inputs["input_ids"].shape[1] :].tolist() if t not in backend.eos_ids]
    backend._prefix = None
    torch.manual_seed(1234)
    generation = backend.generate(content, [request])[0]
    assert generation.output_tokens == len(new) > 0
    assert generation.text == backend.tokenizer.decode(new, skip_special_tokens=True)


def test_factory_builds_transformers(tiny_model_dir: Path) -> None:
    backend = make_backend(
        Settings(backend="transformers", model=str(tiny_model_dir), device="cpu")
    )
    try:
        assert isinstance(backend, TransformersBackend)
        assert backend.model_id == str(tiny_model_dir)
    finally:
        backend.close()


def test_missing_weights_is_backend_unavailable(tiny_model_dir: Path, tmp_path: Path) -> None:
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(BackendUnavailable, match="tiny-model"):
        TransformersBackend(str(no_weights))
    with pytest.raises(BackendUnavailable, match="--base-url"):
        TransformersBackend(str(tmp_path / "does-not-exist"))


def test_one_logprob_per_generated_token(backend: TransformersBackend) -> None:
    content = two_pages()
    requests = [
        GenerationRequest("Summarize as JSON.", json_schema=summary_schema(), max_new_tokens=400),
        GenerationRequest("Write a long story.", max_new_tokens=7),
    ]
    constrained, free = backend.generate(content, requests)
    for generation in (constrained, free):
        logprobs = [lp for _, lp in generation.token_logprobs]
        assert len(logprobs) == generation.output_tokens > 0
        assert all(lp <= 0.0 for lp in logprobs)
        assert "".join(piece for piece, _ in generation.token_logprobs) == generation.text
    # the constrained JSON reply lines up: every leaf value gets a confidence in (0, 1]
    confidence = field_confidence(constrained.text, constrained.token_logprobs)
    assert confidence and all(0.0 < c <= 1.0 for c in confidence.values())
    # greedy decoding of a random model picks the most likely token: at least the uniform share
    vocab = backend.model.get_output_embeddings().weight.shape[0]
    assert min(lp for _, lp in free.token_logprobs) >= -math.log(vocab) - 1e-3


def test_images_encoded_in_chunks_equal_one_pass(
    backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window's images are encoded a few at a time (bounded memory), with the same result."""
    from docvl.pipeline.model import vision
    from docvl.pipeline.model.vision import pixel_chunks

    images = [p.image for p in two_pages() if isinstance(p, ImagePart)]
    images.append(images[0].resize((512, 384)))
    assert [len(c) for c in pixel_chunks(images, 256 * 320)] == [1, 1, 1]
    assert [len(c) for c in pixel_chunks(images, 10**9)] == [3]
    whole = backend.processor.image_processor(images=images, return_tensors="pt")
    with torch.inference_mode():
        reference = backend.model.model.get_image_features(
            whole["pixel_values"], whole["image_grid_thw"], return_dict=True
        )
    monkeypatch.setattr(vision, "ENCODE_CHUNK_PIXELS", 256 * 320)
    grid, encoded = backend.encode_images(images)
    assert torch.equal(grid, whole["image_grid_thw"])
    assert len(encoded.pooler_output) == 3
    for got, want in zip(encoded.pooler_output, reference.pooler_output, strict=True):
        torch.testing.assert_close(got, want)
    for got_layer, want_layer in zip(
        encoded.deepstack_features, reference.deepstack_features, strict=True
    ):
        for got, want in zip(got_layer, want_layer, strict=True):
            torch.testing.assert_close(got, want)
    # and a chunked prefill answers as the processor's one-pass inputs do
    content = two_pages()
    request = GenerationRequest("Summarize the document.", max_new_tokens=12)
    backend._prefix = None
    generation = backend.generate(content, [request])[0]
    assert generation.text == uncached_greedy(backend, content, request)
