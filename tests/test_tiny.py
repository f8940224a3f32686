"""The tiny random Qwen3-VL checkpoint: loads offline, real template, real special tokens, generates
on CPU."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from docvl.pipeline.dev.tiny import (
    CHAT_TEMPLATE_PATH,
    MARKER,
    SPECIAL_TOKENS,
    build_tiny_model,
    is_tiny_model,
)
from docvl.pipeline.errors import BackendUnavailable
from docvl.pipeline.model.qwen import (
    REAL_PREPROCESSOR,
    apply_chat_template,
    eos_token_ids,
    load_processor,
    load_tokenizer,
)

#: sha256 of the real Qwen3-VL-8B-Instruct chat template (chat_template.json's string): catches
#: edits.
REAL_TEMPLATE_SHA256 = "3636d0f0bd6bef02"

USER_TEXT_IMAGE_TEXT = [
    {"type": "text", "text": "Page 1:"},
    {"type": "image"},
    {"type": "text", "text": "What is it?"},
]


@pytest.fixture(scope="session")
def tiny_processor(tiny_model_dir: Path) -> Any:
    return load_processor(str(tiny_model_dir))


def test_checkpoint_files_and_marker(tiny_model_dir: Path) -> None:
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "preprocessor_config.json",
        MARKER,
    ):
        assert (tiny_model_dir / name).is_file(), name
    marker = json.loads((tiny_model_dir / MARKER).read_text())
    assert marker["docvl_tiny"] is True and "RANDOM" in marker["note"]
    assert json.loads((tiny_model_dir / "config.json").read_text())["docvl_tiny"] is True
    assert is_tiny_model(tiny_model_dir)
    pre = json.loads((tiny_model_dir / "preprocessor_config.json").read_text())
    assert pre == REAL_PREPROCESSOR


def test_same_seed_same_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_model(tmp_path / "again", seed=0)
    for path in sorted(tiny_model_dir.iterdir()):
        assert path.read_bytes() == (again / path.name).read_bytes(), path.name


def test_from_pretrained_offline(tiny_model_dir: Path) -> None:
    from transformers import Qwen3VLForConditionalGeneration

    model = Qwen3VLForConditionalGeneration.from_pretrained(
        str(tiny_model_dir), local_files_only=True
    )
    config: Any = model.config
    text = config.text_config
    assert text.max_position_embeddings == 262144
    assert text.vocab_size == 151936  # the real checkpoint's padded embedding rows
    assert config.tie_word_embeddings
    assert sum(p.numel() for p in model.parameters()) < 6_000_000
    assert config.vision_config.patch_size == 16


def test_tokenizer_special_tokens(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir))
    assert tok is not None and type(tok).__name__ == "Qwen2Tokenizer"
    assert len(tok) == 151669  # the real vocabulary: 151,643 ranks + 26 added tokens
    ids = [tok.convert_tokens_to_ids(t) for t, _ in SPECIAL_TOKENS]
    assert ids == list(range(151643, 151669))  # the real ids
    for token, _special in SPECIAL_TOKENS:
        assert tok.encode(token, add_special_tokens=False) == [tok.convert_tokens_to_ids(token)]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert eos_token_ids(tok) == [
        tok.convert_tokens_to_ids("<|im_end|>"),
        tok.convert_tokens_to_ids("<|endoftext|>"),
    ]
    sample = 'Total: {"amount": 1234.5, "currency": "EUR", "ok": true}\nÜber naïve 数字 🙂'
    assert tok.decode(tok.encode(sample, add_special_tokens=False)) == sample
    # JSON punctuation learned as tokens (not byte by byte).
    assert len(tok.encode('{"title": "x"}', add_special_tokens=False)) <= 8


def test_template_is_the_real_one(tiny_model_dir: Path) -> None:
    template = (tiny_model_dir / "chat_template.jinja").read_text(encoding="utf-8")
    assert template == CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")
    assert hashlib.sha256(template.encode()).hexdigest()[:16] == REAL_TEMPLATE_SHA256


def test_template_renders_like_real(tiny_processor: Any, tiny_model_dir: Path) -> None:
    user = {"role": "user", "content": USER_TEXT_IMAGE_TEXT}
    expected = (
        "<|im_start|>user\nPage 1:<|vision_start|><|image_pad|><|vision_end|>"
        "What is it?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert apply_chat_template(tiny_processor, [user]) == expected
    tok = load_tokenizer(str(tiny_model_dir))
    assert apply_chat_template(tok, [user]) == expected  # tokenizer alone renders the same
    images = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare."}]
    two_images = {"role": "user", "content": images}
    assert apply_chat_template(
        tiny_processor, [{"role": "system", "content": "Be brief."}, two_images], add_vision_id=True
    ) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>"
        "Picture 2: <|vision_start|><|image_pad|><|vision_end|>Compare.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": '{"a": 1}'}]
    assert apply_chat_template(tiny_processor, chat, add_generation_prompt=False) == (
        '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n{"a": 1}<|im_end|>\n'
    )


def test_processor_settings(tiny_processor: Any) -> None:
    from transformers import ProcessorMixin

    assert isinstance(tiny_processor, ProcessorMixin)
    ip = tiny_processor.image_processor
    assert (ip.patch_size, ip.merge_size, ip.temporal_patch_size) == (16, 2, 2)
    assert (ip.size["shortest_edge"], ip.size["longest_edge"]) == (65536, 16777216)
    assert list(ip.image_mean) == [0.5, 0.5, 0.5] and list(ip.image_std) == [0.5, 0.5, 0.5]


def test_generate_with_processor_output(tiny_model_dir: Path, tiny_processor: Any) -> None:
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    model = Qwen3VLForConditionalGeneration.from_pretrained(
        str(tiny_model_dir), local_files_only=True
    ).eval()
    text = apply_chat_template(tiny_processor, [{"role": "user", "content": USER_TEXT_IMAGE_TEXT}])
    page = Image.new("RGB", (800, 1024), "white")
    inputs = tiny_processor(text=[text], images=[page], return_tensors="pt")
    assert set(inputs) == {
        "input_ids",
        "attention_mask",
        "mm_token_type_ids",
        "pixel_values",
        "image_grid_thw",
    }
    assert int((inputs["input_ids"] == tiny_processor.image_token_id).sum()) == (800 // 32) * (
        1024 // 32
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=16, min_new_tokens=16, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 16)
    assert isinstance(tiny_processor.decode(out[0, inputs["input_ids"].shape[1] :]), str)


def test_missing_model_is_backend_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable) as err:
        load_processor(str(tmp_path / "nowhere"))
    message = str(err.value)
    for hint in (
        "huggingface-cli download Qwen/Qwen3-VL-8B-Instruct",
        "--backend openai",
        "docvl dev tiny-model",
    ):
        assert hint in message
    assert err.value.code == "backend_unavailable"
    assert load_tokenizer(str(tmp_path / "nowhere")) is None
    (tmp_path / "empty").mkdir()
    assert load_tokenizer(str(tmp_path / "empty")) is None
    with pytest.raises(BackendUnavailable):
        load_processor(str(tmp_path / "empty"))


def test_uncached_hub_id_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(BackendUnavailable):
        load_processor("Qwen/Qwen3-VL-8B-Instruct-not-cached-xyz")
    # Counting needs no checkpoint: Qwen3-VL's tokenizer is rebuilt from the PyPI vocabulary.
    assert type(load_tokenizer("Qwen/Qwen3-VL-8B-Instruct-not-cached-xyz")).__name__ == (
        "QwenTokenizer"
    )
    assert load_tokenizer("Some/Other-VLM-not-cached-xyz") is None
