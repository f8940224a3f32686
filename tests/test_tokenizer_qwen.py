"""The offline Qwen3-VL tokenizer (PyPI vocabulary + tiktoken) equals the checkpoint tokenizer.

Three witnesses: llama.cpp's Qwen2 tokenizer vectors (ids made by the real checkpoint tokenizer), a
``tokenizers`` BPE rebuilt from the same ranks (the tiny model's ``Qwen2Tokenizer``) on the corpus
text layers, and the chat template rendered by transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from docvl.pipeline.dev.tiny import SPECIAL_TOKENS
from docvl.pipeline.model import qwen
from docvl.pipeline.plan import qwen_tokenizer
from docvl.pipeline.plan.qwen_tokenizer import (
    N_RANKS,
    QwenTokenizer,
    VocabularyMissing,
    is_qwen3_vl,
    offline_tokenizer,
)

DATA = Path(__file__).parent / "data" / "llama_cpp"


def llama_cpp_vectors() -> list[tuple[str, list[int]]]:
    inputs = (DATA / "ggml-vocab-qwen2.gguf.inp").read_text(encoding="utf-8")
    outputs = (DATA / "ggml-vocab-qwen2.gguf.out").read_text(encoding="utf-8")
    texts = inputs.split("\n__ggml_vocab_test__\n")[:-1]
    ids = [[int(x) for x in line.split()] for line in outputs.split("\n")[:-1]]
    assert len(texts) == len(ids) == 43
    return list(zip(texts, ids, strict=True))


@pytest.fixture(scope="module")
def tok() -> QwenTokenizer:
    return offline_tokenizer()


@pytest.fixture(scope="module")
def checkpoint_tok(tiny_model_dir: Path) -> Any:
    """The tiny checkpoint's Qwen2Tokenizer: a tokenizers BPE rebuilt from the same ranks."""
    tokenizer = qwen.load_tokenizer(str(tiny_model_dir))
    assert tokenizer is not None and type(tokenizer).__name__ == "Qwen2Tokenizer"
    return tokenizer


def test_llama_cpp_vectors(tok: QwenTokenizer) -> None:
    for text, expected in llama_cpp_vectors():
        assert tok.encode(text) == expected, repr(text)
        assert tok.decode(expected) == text


def test_digits_are_single_tokens(tok: QwenTokenizer) -> None:
    assert tok.encode("2024") == [tok.convert_tokens_to_ids(d) for d in "2024"]


def test_added_tokens_have_the_real_ids(tok: QwenTokenizer) -> None:
    ids = [tok.convert_tokens_to_ids(t) for t, _ in SPECIAL_TOKENS]
    assert ids == list(range(151643, 151669))
    assert len(tok) == N_RANKS + 26 == 151669
    text = "<|im_start|>user\n<think>hi</think><|vision_start|><|image_pad|><|vision_end|>"
    assert tok.encode(text)[:3] == [151644, 872, 198]
    assert tok.encode(text)[-3:] == [151652, 151655, 151653]
    assert 151667 in tok.encode(text) and 151668 in tok.encode(text)


def test_nfc_and_no_composition_across_added_tokens(tok: QwenTokenizer) -> None:
    assert tok.encode("cafe\u0301") == tok.encode("café")
    # '>' + U+0338 composes to '≯' under NFC; the added token is matched first, as in transformers.
    ids = tok.encode("<|im_end|>\u0338")
    assert ids[0] == 151645 and tok.decode(ids) == "<|im_end|>\u0338"


@pytest.mark.model
def test_llama_cpp_vectors_through_rebuilt_bpe(checkpoint_tok: Any) -> None:
    for text, expected in llama_cpp_vectors():
        assert checkpoint_tok.encode(text, add_special_tokens=False) == expected, repr(text)


@pytest.mark.model
def test_same_ids_as_rebuilt_bpe_on_edge_cases(tok: QwenTokenizer, checkpoint_tok: Any) -> None:
    cases = [
        "<|im_end|>\u0338 x",
        "a<tool_call>b</tool_call><|fim_pad|>",
        "1,234.56 €  \t\r\n\r\n  12.5%",
        "ǅ ﬁ ﬃ Å ｶ ḱ̇ 𝔘𝔫𝔦",
        "\u200b\u00a0\u3000 x \x00\x7f",
    ]
    for text in cases:
        assert tok.encode(text) == checkpoint_tok.encode(text, add_special_tokens=False), text


MESSAGES: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": "plain"}],
    [
        {"role": "system", "content": [{"type": "text", "text": "You are docvl."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<page 1>\n"},
                {"type": "image"},
                {"type": "text", "text": "Text layer:\nTotal 12\n"},
                {"type": "image"},
                {"type": "text", "text": "Summarise."},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": '{"a": 1}'}]},
        {"role": "user", "content": [{"type": "text", "text": "Again."}]},
    ],
]


@pytest.mark.model
@pytest.mark.parametrize("messages", MESSAGES)
@pytest.mark.parametrize("vision_id", [False, True])
@pytest.mark.parametrize("generation", [False, True])
def test_chat_template_renders_like_transformers(
    tok: QwenTokenizer,
    checkpoint_tok: Any,
    messages: list[dict[str, Any]],
    vision_id: bool,
    generation: bool,
) -> None:
    kwargs: dict[str, Any] = {"add_generation_prompt": generation, "add_vision_id": vision_id}
    expected = checkpoint_tok.apply_chat_template(messages, tokenize=False, **kwargs)
    assert tok.apply_chat_template(messages, tokenize=False, **kwargs) == expected
    assert tok.apply_chat_template(messages, tokenize=True, **kwargs) == checkpoint_tok.encode(
        expected, add_special_tokens=False
    )


def corpus_text_layers(corpus: Path) -> list[tuple[str, str]]:
    """Every non-empty text layer of the corpus PDFs (good, scanned, slides), page by page."""
    from docvl.pipeline.ingest.load import load_document
    from docvl.pipeline.settings import Settings

    pages: list[tuple[str, str]] = []
    for path in sorted(corpus.glob("*/*.pdf")):
        if path.parent.name == "bad":
            continue
        with load_document(path, Settings()) as doc:
            pages += [(f"{path.name} p{p.page}", p.text) for p in doc.pages if p.text]
    return pages


@pytest.mark.slow
@pytest.mark.model
def test_corpus_text_layers_same_ids(tok: QwenTokenizer, checkpoint_tok: Any, corpus: Path) -> None:
    pages = corpus_text_layers(corpus)
    assert len(pages) > 400  # the 352-page book and the rest
    for where, text in pages:
        assert tok.encode(text) == checkpoint_tok.encode(text, add_special_tokens=False), where


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("Qwen/Qwen3-VL-8B-Instruct", True),
        ("qwen/qwen3-vl-8b-instruct", True),
        ("Qwen/Qwen3-VL-30B-A3B-Instruct", True),
        ("/models/qwen3_vl_8b/", True),
        ("meta-llama/Llama-3.2-11B-Vision-Instruct", False),
        ("Qwen/Qwen2.5-VL-7B-Instruct", False),  # another image tokenizer (patch 14)
    ],
)
def test_family(model: str, family: bool) -> None:
    assert is_qwen3_vl(model) is family


def test_hub_id_not_on_disk_gets_the_offline_tokenizer(tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    assert qwen.load_tokenizer("Qwen/Qwen3-VL-8B-Instruct") is offline_tokenizer()
    assert qwen.load_tokenizer("qwen/qwen3-vl-8b-instruct") is offline_tokenizer()
    assert qwen.load_tokenizer("some-org/other-vlm") is None
    assert qwen.load_tokenizer(str(missing)) is None


def test_missing_vocabulary_falls_back_to_the_estimate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def missing() -> QwenTokenizer:
        raise VocabularyMissing("not installed")

    monkeypatch.setattr(qwen, "offline_tokenizer", missing)
    assert qwen.load_tokenizer("Qwen/Qwen3-VL-8B-Instruct") is None


def test_a_foreign_vocabulary_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "qwen.tiktoken"
    fake.write_text("YQ== 0\n", encoding="utf-8")
    monkeypatch.setattr(qwen_tokenizer, "ranks_path", lambda: fake)
    qwen_tokenizer.load_ranks.cache_clear()
    try:
        with pytest.raises(VocabularyMissing, match="sha256"):
            qwen_tokenizer.load_ranks()
    finally:
        qwen_tokenizer.load_ranks.cache_clear()
