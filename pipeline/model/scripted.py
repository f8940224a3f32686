"""A scripted backend for unit tests: canned replies, real token accounting, recorded calls."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from docvl.pipeline.model.base import FinishReason, Generation, GenerationRequest
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.prompt import Part, hf_messages

Reply = str | tuple[str, FinishReason]
Replier = Callable[[Sequence[Part], GenerationRequest], Reply]
#: A reply's text -> its token pieces and log-probabilities (``Generation.token_logprobs``).
Logprobber = Callable[[str], Sequence[tuple[str, float]]]


@dataclass(frozen=True)
class ScriptedCall:
    content: tuple[Part, ...]
    request: GenerationRequest
    generation: Generation


class ScriptedBackend:
    """Answers from a list of replies (consumed in order) or a callable
    ``(content, request) -> reply``.

    A reply is a string (finish reason 'stop') or ``(text, finish_reason)``. Input tokens are
    counted with a :class:`TokenCounter` (exact with a tokenizer, else the estimate), output tokens
    likewise (capped at ``max_new_tokens``; a reply over it is reported as 'length').
    ``cached_tokens`` mimics one prefill per content: every request after the first on the same
    content reports the content's tokens as cached. ``token_logprobs`` (optional) gives each
    reply's ``Generation.token_logprobs``; without it there are none.
    """

    name = "scripted"

    def __init__(
        self,
        replies: Iterable[Reply] | Replier | None = None,
        *,
        tokenizer: Any | None = None,
        model_id: str = "scripted",
        token_logprobs: Logprobber | None = None,
    ) -> None:
        self.model_id = model_id
        self._logprobs = token_logprobs
        self.counter = TokenCounter(tokenizer)
        self._replier: Replier | None = None
        self._replies: list[Reply] = []
        if callable(replies):
            self._replier = replies
        elif replies is not None:
            self._replies = list(replies)
        else:
            self._replier = lambda content, request: "{}"
        self.calls: list[ScriptedCall] = []
        self.closed = False
        self._last_content: tuple[Part, ...] | None = None
        self._lock = threading.Lock()

    @property
    def requests(self) -> list[GenerationRequest]:
        return [c.request for c in self.calls]

    def _next(
        self, content: Sequence[Part], request: GenerationRequest
    ) -> tuple[str, FinishReason]:
        if self._replier is not None:
            reply = self._replier(content, request)
        elif self._replies:
            reply = self._replies.pop(0)
        else:
            raise AssertionError(
                f"ScriptedBackend ran out of replies at call {len(self.calls) + 1}"
            )
        return (reply, "stop") if isinstance(reply, str) else reply

    def _prompt_tokens(self, parts: Sequence[Part], request: GenerationRequest) -> int:
        n = self.counter.prompt(parts, request.instruction)
        if not request.turns:
            return n
        if self.counter.tokenizer is None:  # estimate: text plus ChatML framing per message
            return n + sum(
                self.counter.text(t.reply) + self.counter.text(t.feedback) + 10
                for t in request.turns
            )
        tok = self.counter.tokenizer
        with_turns = tok.apply_chat_template(
            hf_messages(parts, request.instruction, request.turns),
            tokenize=False,
            add_generation_prompt=True,
        )
        without = tok.apply_chat_template(
            hf_messages(parts, request.instruction), tokenize=False, add_generation_prompt=True
        )
        extra = len(tok.encode(with_turns, add_special_tokens=False))
        extra -= len(tok.encode(without, add_special_tokens=False))
        return int(n + extra)

    def generate(
        self, content: Sequence[Part], requests: Sequence[GenerationRequest]
    ) -> list[Generation]:
        with self._lock:
            parts = tuple(content)
            same = self._last_content == parts
            self._last_content = parts
            content_tokens = self.counter.content(parts) if parts else 0
            out: list[Generation] = []
            for i, request in enumerate(requests):
                text, finish = self._next(parts, request)
                n_out = self.counter.text(text)
                if n_out > request.max_new_tokens:
                    n_out, finish = request.max_new_tokens, "length"
                n_in = self._prompt_tokens(parts, request)
                generation = Generation(
                    text=text,
                    finish_reason=finish,
                    input_tokens=n_in,
                    output_tokens=n_out,
                    cached_tokens=content_tokens if (same or i > 0) else 0,
                    timings={"decode_s": 0.0},
                    token_logprobs=tuple(self._logprobs(text)) if self._logprobs else (),
                )
                self.calls.append(ScriptedCall(parts, request, generation))
                out.append(generation)
            return out

    def close(self) -> None:
        self.closed = True
