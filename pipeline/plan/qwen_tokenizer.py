"""Qwen3-VL's tokenizer, offline: exact token ids without the checkpoint on disk.

Qwen2, Qwen3 and Qwen3-VL share one byte-level BPE vocabulary: 151,643 ranked tokens (rank = id),
then 26 added tokens (ids 151643-151668). The ranks ship on PyPI in the ``dashscope`` package
(Alibaba's Qwen SDK, Apache-2.0) as ``dashscope/resources/qwen.tiktoken``; this module reads that
file (without importing ``dashscope``) and encodes like the checkpoint's ``Qwen2Tokenizer``:

1. added tokens are matched in the raw text first (``split_special_tokens: false``, ``<think>``
   too);
2. each other segment is NFC-normalised, split with Qwen's pre-tokenizer pattern and byte-pair
   merged by rank (``tiktoken``'s ``CoreBPE``).

The chat template is the checkpoint's own (``qwen3_vl_chat_template.jinja``, from
Qwen/Qwen3-VL-8B-Instruct's ``chat_template.json``), rendered with the settings transformers uses.
Equality with the checkpoint tokenizer is tested on llama.cpp's Qwen2 tokenizer vectors and on the
corpus text layers (tests/test_tokenizer_qwen.py).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Qwen2Tokenizer's pre-tokenizer pattern (transformers ``tokenization_qwen2.PRETOKENIZE_REGEX``;
#: ``\p{N}`` alone: every digit is its own piece).
PRETOKENIZE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
#: The 26 added tokens in id order (151643..151668), as in the checkpoint's tokenizer_config.json,
#: with their ``special`` flag.
ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
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
N_RANKS = 151643
#: sha256 of ``qwen.tiktoken`` as shipped by dashscope (the same file as qwen-agent's).
RANKS_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"
CHAT_TEMPLATE_PATH = Path(__file__).with_name("qwen3_vl_chat_template.jinja")
#: Model names whose tokenizer this is: every Qwen3-VL size, as a hub id, a served model name
#: (vLLM: ``Qwen/Qwen3-VL-8B-Instruct``; OpenRouter: ``qwen/qwen3-vl-8b-instruct``) or a folder.
FAMILY_MARKERS = ("qwen3-vl", "qwen3_vl")


class VocabularyMissing(RuntimeError):
    """``dashscope``'s ``qwen.tiktoken`` is not installed or is not the expected file."""


def is_qwen3_vl(model: str) -> bool:
    name = model.rstrip("/").lower()
    return any(marker in name for marker in FAMILY_MARKERS)


def ranks_path() -> Path:
    """Where ``dashscope`` keeps ``qwen.tiktoken`` (found without importing the SDK)."""
    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise VocabularyMissing("the `dashscope` package (Qwen's vocabulary) is not installed")
    for location in spec.submodule_search_locations:
        path = Path(location) / "resources" / "qwen.tiktoken"
        if path.is_file():
            return path
    raise VocabularyMissing("dashscope is installed without resources/qwen.tiktoken")


@functools.cache
def load_ranks() -> dict[bytes, int]:
    """The 151,643 ranks (token bytes -> id), checked against the known file hash."""
    data = ranks_path().read_bytes()
    if hashlib.sha256(data).hexdigest() != RANKS_SHA256:
        raise VocabularyMissing(f"{ranks_path()} is not the expected Qwen vocabulary (sha256)")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if len(ranks) != N_RANKS or sorted(ranks.values()) != list(range(N_RANKS)):
        raise VocabularyMissing("qwen.tiktoken does not hold ranks 0..151642")
    return ranks


def added_token_ids() -> dict[str, int]:
    return {token: N_RANKS + i for i, (token, _special) in enumerate(ADDED_TOKENS)}


@functools.cache
def _chat_template() -> Any:
    """The checkpoint's template compiled as transformers compiles chat templates."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = tojson
    return env.from_string(CHAT_TEMPLATE_PATH.read_text(encoding="utf-8"))


class QwenTokenizer:
    """Qwen3-VL's tokenizer from the PyPI vocabulary; the subset of the ``PreTrainedTokenizer``
    interface the planner uses (``encode``, ``decode``, ``apply_chat_template``,
    ``convert_tokens_to_ids``)."""

    name_or_path = "qwen3-vl (dashscope qwen.tiktoken)"

    def __init__(self) -> None:
        import regex
        import tiktoken

        self.added = added_token_ids()
        self._encoding = tiktoken.Encoding(
            "qwen3-vl",
            pat_str=PRETOKENIZE_PATTERN,
            mergeable_ranks=load_ranks(),
            special_tokens=self.added,
        )
        longest_first = sorted(self.added, key=len, reverse=True)
        self._added_re = regex.compile("|".join(regex.escape(t) for t in longest_first))
        self.chat_template = CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")

    def __len__(self) -> int:
        return N_RANKS + len(ADDED_TOKENS)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text`` (Qwen adds no BOS, so ``add_special_tokens`` changes nothing)."""
        ids: list[int] = []
        start = 0
        for match in self._added_re.finditer(text):
            ids += self._ordinary(text[start : match.start()])
            ids.append(self.added[match.group()])
            start = match.end()
        ids += self._ordinary(text[start:])
        return ids

    def _ordinary(self, segment: str) -> list[int]:
        if not segment:
            return []
        return self._encoding.encode_ordinary(unicodedata.normalize("NFC", segment))

    def decode(self, ids: Sequence[int]) -> str:
        return self._encoding.decode(list(ids), errors="replace")

    def convert_tokens_to_ids(self, token: str) -> int | None:
        if token in self.added:
            return self.added[token]
        return load_ranks().get(token.encode("utf-8"))

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tokenize: bool = False,
        add_generation_prompt: bool = False,
        add_vision_id: bool = False,
        **_ignored: Any,
    ) -> str | list[int]:
        """Render ``messages`` as the checkpoint's template does (``tokenize=True``: their ids)."""
        text = _chat_template().render(
            messages=[dict(m) for m in messages],
            tools=None,
            add_generation_prompt=add_generation_prompt,
            add_vision_id=add_vision_id,
        )
        return self.encode(text) if tokenize else str(text)


@functools.cache
def offline_tokenizer() -> QwenTokenizer:
    """One shared instance (building it reads 2.5 MB and takes about half a second)."""
    return QwenTokenizer()
