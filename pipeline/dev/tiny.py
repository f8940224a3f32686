"""A tiny RANDOM Qwen3-VL checkpoint for offline tests and smoke runs (no download, a few seconds to
build).

Real code path, real processor settings, real chat template and Qwen's special tokens; only the
sizes are tiny (about 0.7 M parameters) and the weights are random, so its replies are noise. The
tokenizer is a byte-level BPE trained here on a built-in English + JSON sample (Qwen's pre-tokenizer
regex), so its ids differ from the real ones, but every special token exists with its real role and
in the real order.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from pipeline.model.qwen import REAL_PREPROCESSOR, REAL_VIDEO_PREPROCESSOR

CHAT_TEMPLATE_PATH = Path(__file__).with_name("chat_template.jinja")
MARKER = "docvl-tiny.json"
#: Qwen's added tokens in their real order (real ids 151643..151668) with their ``special`` flag.
SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
BPE_VOCAB_SIZE = 3072  # trained size lands a little below (about 2,950)

_PROSE = """\
Summarize the document in a few sentences. Answer the question using only the pages shown above.
Extract the fields defined by the JSON schema and reply with one JSON object, nothing else.
The annual report describes revenue, costs, profit and the outlook for the next financial year.
This invoice lists the items, quantities, unit prices, taxes and the total amount due by the \
customer.
Page one shows the title, the authors and the date; the following pages contain tables and figures.
The contract between the parties starts on the first day of January and ends after twelve months.
A slide deck presents the project plan: goals, milestones, risks, budget and the team responsible.
Scanned letters may contain handwriting, stamps, signatures and text that is hard to read.
If the information is not in the document, say so instead of guessing. Be brief and precise.
The results section compares the new method with previous work on several public benchmarks.
Figure 3 plots the accuracy against the number of training examples for each model size.
Meeting notes: the committee approved the proposal, postponed the vote and scheduled a review.
Customer name, address, phone number, email, order number, shipping date and payment method.
Section headings, bullet points, footnotes, captions, page numbers, headers and footers.
The quick brown fox jumps over the lazy dog while the cat sleeps near the warm window.
Qwen reads page images and text together; each image is split into patches of sixteen pixels.
"""
_KEYS = (
    "title",
    "summary",
    "answer",
    "date",
    "total",
    "currency",
    "items",
    "name",
    "quantity",
    "price",
    "pages",
    "page",
    "confidence",
    "evidence",
    "language",
    "authors",
    "type",
    "value",
    "notes",
    "id",
)


def _training_text(seed: int) -> list[str]:
    """Deterministic English + JSON sample (JSON punctuation such as '": ', '{"', '"}' gets its own
    tokens)."""
    rng = random.Random(seed)
    words = _PROSE.split()
    lines = _PROSE.splitlines()
    out: list[str] = []
    for _ in range(300):
        record: dict[str, Any] = {}
        for key in rng.sample(_KEYS, rng.randint(2, 6)):
            kind = rng.randrange(5)
            if kind == 0:
                record[key] = " ".join(rng.sample(words, rng.randint(1, 6)))
            elif kind == 1:
                record[key] = rng.randint(0, 100000) / rng.choice((1, 100))
            elif kind == 2:
                record[key] = [rng.randint(1, 500) for _ in range(rng.randint(0, 4))]
            elif kind == 3:
                record[key] = rng.choice((True, False, None))
            else:
                record[key] = {"text": rng.choice(words), "page": rng.randint(1, 99)}
        out.append(json.dumps(record, indent=rng.choice((None, 2))))
        out.append(rng.choice(lines))
    # Word forms (capitalised, upper case, common affixes) widen the vocabulary to a few thousand
    # tokens.
    stems = sorted({w.strip(".,;:").lower() for w in words if w.strip(".,;:").isalpha()})
    forms = [
        " ".join(
            (
                w,
                w.capitalize(),
                w.upper(),
                w + "s",
                w + "ed",
                w + "ing",
                w + "ly",
                "un" + w,
                "re" + w,
            )
        )
        for w in stems
    ]
    return out + lines * 3 + forms * 2


def build_tokenizer(seed: int = 0) -> Any:
    """Byte-level BPE with Qwen's pre-tokenizer, trained locally, plus Qwen's special tokens: a
    Qwen2Tokenizer."""
    from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    bpe = Tokenizer(BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    bpe.train_from_iterator(_training_text(seed), trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    base = len(vocab)
    for offset, (token, _special) in enumerate(SPECIAL_TOKENS):
        vocab[token] = base + offset  # same order as the real ids, right after the BPE vocabulary
    settings: dict[str, Any] = {  # the real tokenizer_config.json's roles (no bos, no unk)
        "vocab": vocab,
        "merges": [tuple(m) for m in model["merges"]],
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
    vocab_size = -(-len(tokenizer) // 64) * 64
    text = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
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
        "out_hidden_size": 64,
        "num_position_embeddings": 2304,
        "deepstack_visual_indexes": [0, 1],
        "hidden_act": "gelu_pytorch_tanh",
    }
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=False,
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
    :func:`pipeline.model.qwen.load_processor`. Same seed, same files.
    """
    import torch
    from transformers import GenerationConfig, Qwen3VLForConditionalGeneration

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(seed)
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
