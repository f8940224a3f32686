"""The re-ask loop: ask, parse, validate; feed errors back; keep the last reply.

Several tasks on one window: the first attempt of every task goes out in ONE ``backend.generate``
call (one prefill of the pages, shared by all requests); re-asks then go out one task at a time.

Per task, up to ``settings.max_attempts`` attempts:

* a reply that parses and validates is accepted (whatever its finish reason);
* a reply cut off by the token limit (``finish_reason == "length"``) or caught in a repetition loop
  is never asked again over the same pages: :class:`~docvl.pipeline.errors.ReplyTooLong` goes up at
  once, and the engine splits the window (see :mod:`docvl.pipeline.engine.windows`);
* any other invalid reply is re-asked with the reply and the parse/validation errors appended as a
  :class:`~docvl.pipeline.plan.prompt.Turn` (instructor style), at the same temperature. Only the
  LAST reply and its feedback are kept in the prompt (earlier rounds are replaced), so re-asks do
  not grow without bound.

The last failure raises :class:`RepairFailed` (a ValidationFailed, code ``validation_failed``) with
the raw last reply, the attempt count and the usage of every attempt; its error record keeps the
reply (``raw_reply``, at most 64 KiB, ``raw_reply_truncated`` when cut) for the user to see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from docvl.pipeline.errors import DocvlError, ErrorRecord, ReplyTooLong, ValidationFailed
from docvl.pipeline.model.base import Generation, ModelBackend
from docvl.pipeline.plan.prompt import Part, Turn, pages_of
from docvl.pipeline.result import Usage
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.confidence import field_confidence
from docvl.pipeline.tasks.jsonparse import JsonParseError, parse_json
from docvl.pipeline.tasks.specs import TaskSpec

#: Validation errors listed in a re-ask, at most.
MAX_FEEDBACK_ERRORS = 20


class RepairFailed(ValidationFailed):
    """No valid reply after every attempt. ``usage`` covers all attempts."""

    def __init__(
        self, message: str, *, raw: str, attempts: int, usage: Usage, page: int | None = None
    ) -> None:
        super().__init__(message, raw=raw, attempts=attempts, page=page)
        self.usage = usage


class TaskResult(BaseModel):
    """One task's result on one prompt (a window, a reduce or a completeness call): the validated
    data (dumped to JSON types) or the error that ended it. The one task-result type, from repair to
    finish.
    """

    task: str
    data: dict[str, Any] | None = None
    error: ErrorRecord | None = None
    attempts: int = 0
    #: The raw last reply, kept when the task failed (the envelope has it in the error record's
    #: ``raw_reply``, bounded).
    raw: str | None = None
    usage: Usage = Field(default_factory=Usage)
    #: Seconds the backend reported (``prefill_s``, ``decode_s``, ``request_s``) and ``prefills``.
    timings: dict[str, float] = Field(default_factory=dict)
    #: Per leaf value of the accepted reply (paths like ``lines[3].amount``): exp(mean token
    #: log-probability), see :func:`~docvl.pipeline.tasks.confidence.field_confidence`. Empty when
    #: the backend gave no log-probabilities.
    confidence: dict[str, float] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.data is not None

    def accept(self, value: BaseModel) -> None:
        self.data, self.raw = value.model_dump(mode="json"), None


def looks_repetitive(
    text: str, *, min_repeats: int = 4, min_span: int = 48, max_period: int = 120
) -> bool:
    """True when the reply ends in the same chunk repeated (the classic Qwen loop)."""
    tail = text.rstrip()[-max_period * (min_repeats + 1) :]
    for period in range(1, max_period + 1):
        span = period * min_repeats
        if span < min_span:
            continue
        if span > len(tail):
            break
        unit = tail[-period:]
        if tail[-span:] == unit * min_repeats and unit.strip():
            return True
    return False


def validate_reply(text: str, model: type[BaseModel]) -> BaseModel:
    """Parse and validate; raises JsonParseError or pydantic ValidationError."""
    return model.model_validate(parse_json(text))


def feedback_for(error: JsonParseError | ValidationError) -> str:
    if isinstance(error, JsonParseError):
        head = f"Your reply could not be used: {error}."
    else:
        lines = []
        for item in error.errors()[:MAX_FEEDBACK_ERRORS]:
            loc = ".".join(str(p) for p in item["loc"]) or "(top level)"
            lines.append(f"- {loc}: {item['msg']}")
        more = error.error_count() - MAX_FEEDBACK_ERRORS
        if more > 0:
            lines.append(f"- ... and {more} more")
        head = "Your reply does not match the schema:\n" + "\n".join(lines)
    return head + "\nReply again with only the corrected JSON object.\n"


def usage_of(gen: Generation) -> Usage:
    return Usage(
        input_tokens=gen.input_tokens,
        output_tokens=gen.output_tokens,
        cached_tokens=gen.cached_tokens,
        requests=1,
    )


def _add_timings(into: dict[str, float], gen: Generation) -> None:
    for key, value in gen.timings.items():
        into[key] = into.get(key, 0.0) + float(value)
    # A request whose prompt was computed from scratch: no reused prefill, no server prefix-cache
    # hit.
    into["prefills"] = into.get("prefills", 0.0) + (1.0 if gen.cached_tokens == 0 else 0.0)


def run_tasks(
    backend: ModelBackend,
    content: Sequence[Part],
    specs: Sequence[TaskSpec],
    settings: Settings,
    *,
    page: int | None = None,
) -> list[TaskResult]:
    """Every spec over ``content``: one batched first attempt, then individual re-asks.

    Never raises for a task's validation failure (it becomes the result's error record); a
    BackendError/BackendUnavailable of the batched call is recorded on every result.
    """
    results = [TaskResult(task=spec.name) for spec in specs]
    if not specs:
        return results
    pages = pages_of(content)
    try:
        firsts = backend.generate(
            content, [s.request(settings.temperature, pages=pages) for s in specs]
        )
    except DocvlError as exc:
        for result in results:
            result.error = exc.record()
        return results
    if len(firsts) != len(specs):
        raise RuntimeError(f"backend returned {len(firsts)} generations for {len(specs)} requests")
    for spec, result, first in zip(specs, results, firsts, strict=True):
        try:
            result.accept(repair(backend, content, spec, settings, first=first, state=result))
        except RepairFailed as exc:
            result.error = exc.record().model_copy(
                update={"message": f"{spec.name}: {exc.message}", "page": page}
            )
        except DocvlError as exc:
            result.error = exc.record()
    return results


def repair(
    backend: ModelBackend,
    content: Sequence[Part],
    spec: TaskSpec,
    settings: Settings,
    *,
    first: Generation | None = None,
    state: TaskResult | None = None,
) -> BaseModel:
    """Ask (unless ``first`` is the first attempt's reply) and re-ask until a reply validates.

    ``state`` (optional) receives raw, attempts, usage and timings as they accrue.
    Raises RepairFailed after ``settings.max_attempts`` attempts, BackendError from the backend.
    """
    state = state if state is not None else TaskResult(task=spec.name)
    temperature = settings.temperature
    turns: tuple[Turn, ...] = ()
    gen = first
    problem = ""
    while True:
        if gen is None:
            gen = backend.generate(content, [spec.request(temperature, turns, pages_of(content))])[
                0
            ]
        state.attempts += 1
        state.raw = gen.text
        state.usage.add(usage_of(gen))
        _add_timings(state.timings, gen)
        try:
            value = validate_reply(gen.text, spec.model)
            state.confidence = field_confidence(gen.text, gen.token_logprobs)
            return value
        except (JsonParseError, ValidationError) as exc:
            too_long = gen.finish_reason == "length" or looks_repetitive(gen.text)
            if too_long:  # the same request would fail the same way: never send it again
                why = (
                    f"hit the {spec.max_new_tokens}-token limit before the JSON was complete"
                    if gen.finish_reason == "length"
                    else "fell into a repetition loop"
                )
                raise ReplyTooLong(
                    f"the {spec.schema_name} reply {why}", raw=gen.text, attempts=state.attempts
                ) from None
            problem = _one_line(exc)
            turns = (Turn(reply=gen.text, feedback=feedback_for(exc)),)
        if state.attempts >= settings.max_attempts:
            raise RepairFailed(
                f"no valid {spec.schema_name} reply after {state.attempts} attempt(s); "
                f"last problem: {problem}",
                raw=state.raw or "",
                attempts=state.attempts,
                usage=state.usage,
            )
        gen = None


def _one_line(exc: Any) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        return f"{exc.error_count()} validation error(s), first {loc}: {first['msg']}"
    return str(exc)
