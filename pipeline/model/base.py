"""The one model seam: every backend (transformers, OpenAI-compatible HTTP, scripted) implements it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pipeline.plan.prompt import Part, Turn

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
    text: str
    finish_reason: FinishReason
    input_tokens: int
    output_tokens: int
    #: Prompt tokens not recomputed: a reused prefill (transformers) or a server prefix-cache hit.
    cached_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class ModelBackend(Protocol):
    name: str
    model_id: str

    def generate(
        self, content: Sequence[Part], requests: Sequence[GenerationRequest]
    ) -> list[Generation]:
        """Answer each request over the same ``content`` (page parts with rendered images).

        Backends that can share work do so: transformers prefills ``content`` once and reuses its KV
        cache for every request; HTTP backends keep ``content`` first so server prefix caching applies.
        Raises BackendError (retryable) or BackendUnavailable.
        """
        ...

    def close(self) -> None: ...
