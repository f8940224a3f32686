"""The one model seam: every backend (transformers, OpenAI-compatible HTTP, scripted) implements
it."""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from docvl.pipeline.plan.prompt import Part, Turn

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class GenerationRequest:
    """One task over a shared content prefix. The instruction always goes last in the prompt."""

    instruction: str
    #: JSON Schema the reply must follow (constrained decoding / response_format json_schema).
    json_schema: dict[str, Any] | None = None
    max_new_tokens: int = 1024
    temperature: float = 0.0
    #: Earlier replies and the feedback on them (re-ask loop), appended after the instruction.
    turns: tuple[Turn, ...] = ()


@dataclass(frozen=True)
class Generation:
    """A backend's reply to one request: its text, why it stopped, and what it cost.

    ``finish_reason`` is ``length`` when the reply hit ``max_new_tokens`` (the JSON is then
    usually incomplete), else ``stop``. ``timings`` holds seconds the backend measured
    (``prefill_s``, ``decode_s`` or ``request_s``).
    """

    text: str
    finish_reason: FinishReason
    input_tokens: int
    output_tokens: int
    #: Prompt tokens not recomputed: a reused prefill (transformers) or a server prefix-cache hit.
    cached_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    #: The generated tokens' text pieces and natural-log probabilities, in order, when the backend
    #: has them (transformers; OpenAI-compatible servers that honour ``logprobs``), else empty.
    #: The pieces spell ``text`` when joined (a character split over several tokens goes to the
    #: token that completes it; the others get ``""``); each log-probability is the token's under
    #: the distribution it was drawn from (constrained decoding's masking included). Read by
    #: :func:`docvl.pipeline.tasks.confidence.field_confidence`.
    token_logprobs: tuple[tuple[str, float], ...] = ()


def pieces_from_bytes(tokens: Sequence[tuple[bytes, float]]) -> tuple[tuple[str, float], ...]:
    """``token_logprobs`` from each token's UTF-8 bytes: a character split over several tokens goes
    to the token that completes it (the others get ``""``)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return tuple((decoder.decode(raw), logprob) for raw, logprob in tokens)


@runtime_checkable
class ModelBackend(Protocol):
    """The one model seam. ``name`` is the backend kind (``transformers``, ``openai``, ...) and
    ``model_id`` the model it serves; both go into every envelope's ``model``."""

    name: str
    model_id: str

    def generate(
        self, content: Sequence[Part], requests: Sequence[GenerationRequest]
    ) -> list[Generation]:
        """Answer each request over the same ``content`` (page parts with rendered images).

        Backends that can share work do so: transformers prefills ``content`` once and reuses its KV
        cache for every request; HTTP backends keep ``content`` first so server prefix caching
        applies. Raises BackendError (retryable) or BackendUnavailable.
        """
        ...

    def close(self) -> None:
        """Release what the backend holds (model weights, HTTP connections, threads). Called once
        by whoever built the backend, after its last ``generate``; calling it twice is harmless."""
        ...
