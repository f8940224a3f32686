"""Constrained JSON decoding: llguidance as a transformers ``LogitsProcessor``.

:class:`JsonConstrainer` wraps a Hugging Face tokenizer once (building llguidance's tokenizer costs
about a second) and hands out a fresh :class:`LLGuidanceLogitsProcessor` per decode (the backend's
:func:`docvl.pipeline.model.decoding.decode`, or transformers' ``generate``). Each
step it asks the matcher for the allowed-token bitmask
(``llguidance.numpy.fill_next_token_bitmask``), unpacks it into one boolean per token with a single
``np.unpackbits``, masks the logits in place (``np.copyto(..., where=)`` on a CPU view, else one
``masked_fill_``) and feeds the sampled token back with ``consume_token``. Not
``llguidance.torch.apply_token_bitmask_inplace``, whose ``torch.compile`` is slow and fragile on
CPU; building the mask with per-bit torch ops cost about 100 ms a token on a busy CPU for Qwen's
151,936-row vocabulary.

The grammar allows no free whitespace (``whitespace_flexible: false``), and once the JSON value is
complete the matcher allows only the end-of-turn token, so decoding stops right after the
closing brace. A real model ends its reply by itself; a model with random weights terminates only
when every field of the schema is bounded (string ``maxLength``, number ``minimum``/``maximum``,
array ``maxItems``, ``additionalProperties: false``): ``Settings.decoder_bounds``.

:func:`with_grammar_options` writes the same options into a schema's ``x-guidance`` for servers
whose constrained decoding is llguidance (vLLM's ``guidance`` backend honours it), so a remote
model gets no free whitespace either.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from docvl.pipeline.errors import UsageError

if TYPE_CHECKING:
    import torch

#: Options applied after the schema's own ``x-guidance``: never free whitespace between JSON tokens.
GRAMMAR_OVERRIDES: dict[str, Any] = {"whitespace_flexible": False}


def with_grammar_options(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` whose ``x-guidance`` carries :data:`GRAMMAR_OVERRIDES` (over any options
    the schema already had)."""
    own = schema.get("x-guidance")
    options = {**(own if isinstance(own, Mapping) else {}), **GRAMMAR_OVERRIDES}
    return {**schema, "x-guidance": options}


@lru_cache(maxsize=64)
def _grammar(schema_json: str) -> str:
    import llguidance

    return str(
        llguidance.LLMatcher.grammar_from_json_schema(
            schema_json, overrides=cast(Any, GRAMMAR_OVERRIDES)
        )
    )


def json_grammar(schema: Mapping[str, Any]) -> str:
    """The llguidance grammar for a JSON Schema (cached by its JSON; key order matters: it is the
    output order)."""
    return _grammar(json.dumps(schema))


class LLGuidanceLogitsProcessor:
    """Masks every token the grammar forbids. Batch size 1; one instance per decode.

    A transformers logits processor by protocol (``__call__(input_ids, scores)``), so importing this
    module stays free of torch and transformers until a processor is built.
    """

    def __init__(self, matcher: Any, vocab_size: int) -> None:
        self.matcher = matcher
        self.vocab_size = vocab_size
        self._bitmask = np.full((1, (vocab_size + 31) // 32), -1, dtype=np.int32)
        self._prompt_len: int | None = None

    def _consume_new(self, input_ids: torch.LongTensor) -> None:
        seq_len = int(input_ids.shape[1])
        if self._prompt_len is None:
            self._prompt_len = seq_len
            return
        # Exactly one new token per step (no speculative decoding here).
        token = int(input_ids[0, -1])
        if not self.matcher.consume_token(token):
            raise RuntimeError(f"llguidance rejected token {token}: {self.matcher.get_error()}")

    def allowed_array(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Boolean ``(vocab_size,)`` array of the tokens the grammar allows next: bit ``i % 32``
        of the bitmask's 32-bit word ``i // 32`` (least significant bit first), as llguidance
        writes it."""
        from llguidance.numpy import fill_next_token_bitmask

        fill_next_token_bitmask(self.matcher, self._bitmask, 0)
        words = self._bitmask[0]
        if sys.byteorder != "little":  # unpack bytes in little-endian order, least bit first
            words = words.byteswap()
        bits = np.unpackbits(words.view(np.uint8), bitorder="little")
        return bits[: self.vocab_size].view(np.bool_)

    def allowed_mask(self) -> torch.Tensor:
        """Boolean ``(vocab_size,)`` tensor of the tokens the grammar allows next."""
        import torch

        return torch.from_numpy(self.allowed_array())

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Sets every forbidden token's score (and every column past ``vocab_size``) to ``-inf``,
        IN PLACE, and returns ``scores`` (each step's scores are a fresh tensor: the model's
        float32 logits in ``decode``, a float copy of them in ``generate``)."""
        import torch

        if input_ids.shape[0] != 1:
            raise ValueError("LLGuidanceLogitsProcessor supports batch size 1 only")
        self._consume_new(input_ids)
        if self.matcher.is_error():
            raise RuntimeError(f"llguidance matcher error: {self.matcher.get_error()}")
        allowed = self.allowed_array()
        n = min(int(scores.shape[-1]), int(allowed.shape[0]))
        forbidden = ~allowed[:n]
        if scores.device.type == "cpu" and scores.dtype in (torch.float32, torch.float16):
            # One single-threaded pass over a view of the row: torch's masked_fill_ splits this
            # small job across its threads, which costs milliseconds on a busy CPU.
            np.copyto(scores.numpy()[0, :n], -np.inf, where=forbidden)
        else:
            scores[:, :n].masked_fill_(torch.from_numpy(forbidden).to(scores.device), -torch.inf)
        if n < scores.shape[-1]:
            scores[:, n:] = float("-inf")
        return scores


def _ll_tokenizer(tokenizer: Any, vocab_size: int | None, eos_token: int) -> Any:
    """llguidance's tokenizer for a fast Hugging Face tokenizer.

    ``llguidance.hf.from_tokenizer`` copies the Rust tokenizer first (a JSON round trip of the
    151,643-token vocabulary: 0.7 s of its 2.3 s here) only to switch padding and truncation off
    on the copy. A tokenizer with neither set is serialised as it is.
    """
    import llguidance
    import llguidance.hf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.padding is not None or backend.truncation is not None:
        return llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=eos_token)
    return llguidance.LLTokenizer(backend.to_str(), n_vocab=vocab_size, eos_token=eos_token)


class JsonConstrainer:
    """Turns JSON Schemas into logits processors for one tokenizer.

    ``eos_token_ids``: the tokens that end a reply (``<|im_end|>`` first); the grammar forces them
    at the end. ``vocab_size``: the width of the model's logits (the model pads its vocabulary
    beyond the tokenizer's).
    """

    def __init__(
        self, tokenizer: Any, eos_token_ids: Sequence[int], vocab_size: int | None = None
    ) -> None:
        self.eos_token_ids = list(eos_token_ids)
        if not self.eos_token_ids:
            raise ValueError("no end-of-reply token ids")
        self.ll_tokenizer = _ll_tokenizer(tokenizer, vocab_size, self.eos_token_ids[0])
        self.vocab_size = int(vocab_size or self.ll_tokenizer.vocab_size)

    def matcher(self, schema: Mapping[str, Any]) -> Any:
        import llguidance

        matcher = llguidance.LLMatcher(self.ll_tokenizer, json_grammar(schema), log_level=0)
        if matcher.is_error():
            raise UsageError(
                f"JSON schema not supported by the constrained decoder: {matcher.get_error()}"
            )
        return matcher

    def processor(self, schema: Mapping[str, Any]) -> LLGuidanceLogitsProcessor:
        """A fresh processor for one decode (they are stateful)."""
        return LLGuidanceLogitsProcessor(self.matcher(schema), self.vocab_size)

    def validate(self, schema: Mapping[str, Any], text: str) -> bool:
        """Whether ``text`` is a complete reply the grammar accepts (for tests and diagnostics)."""
        matcher = self.matcher(schema)
        tokens = self.ll_tokenizer.tokenize_str(text)
        return bool(matcher.consume_tokens(tokens) and matcher.is_accepting())
