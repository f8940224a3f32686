"""The re-ask loop: ask, parse, validate; feed errors back; keep the last reply.

Several tasks on one window: the first attempt of every task goes out in ONE ``backend.generate`` call
(one prefill of the pages, shared by all requests); re-asks then go out one task at a time.

Per task, up to ``settings.max_attempts`` attempts:

* a reply that parses and validates is accepted (whatever its finish reason);
* a reply cut off by the token limit (``finish_reason == "length"``) or caught in a repetition loop is
  retried at the next temperature of :data:`TEMPERATURE_LADDER` (0 -> 0.7 -> 1.0), without the broken
  reply in the prompt;
* any other invalid reply is re-asked with the reply and the parse/validation errors appended as a
  :class:`~pipeline.prompt.Turn` (instructor style), at the same temperature. Only the LAST reply and its
  feedback are kept in the prompt (earlier rounds are replaced), so re-asks do not grow without bound.

The last failure raises :class:`RepairFailed` (a ValidationFailed, code ``validation_failed``) with the
raw last reply, the attempt count and the usage of every attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from pipeline.backends.base import Generation, ModelBackend
from pipeline.errors import DocvlError, ErrorRecord, ValidationFailed
from pipeline.jsonparse import JsonParseError, parse_json
from pipeline.prompt import Part, Turn, pages_of
from pipeline.result import Usage
from pipeline.settings import Settings
from pipeline.tasks import TaskSpec

TEMPERATURE_LADDER = (0.0, 0.7, 1.0)
#: Validation errors listed in a re-ask, at most.
MAX_FEEDBACK_ERRORS = 20


class RepairFailed(ValidationFailed):
    """No valid reply after every attempt. ``usage`` covers all attempts."""

    def __init__(self, message: str, *, raw: str, attempts: int, usage: Usage, page: int | None = None) -> None:
        super().__init__(message, raw=raw, attempts=attempts, page=page)
        self.usage = usage


@dataclass
class TaskOutcome:
    """One task on one window: the validated value, or the error that ended it."""

    spec: TaskSpec
    value: BaseModel | None = None
    error: ErrorRecord | None = None
    raw: str = ""
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.value is not None


def next_temperature(current: float) -> float:
    for value in TEMPERATURE_LADDER:
        if value > current + 1e-9:
            return value
    return round(min(current + 0.3, 2.0), 3)


def looks_repetitive(text: str, *, min_repeats: int = 4, min_span: int = 48, max_period: int = 120) -> bool:
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
    return Usage(input_tokens=gen.input_tokens, output_tokens=gen.output_tokens,
                 cached_tokens=gen.cached_tokens, requests=1)


def _add_timings(into: dict[str, float], gen: Generation) -> None:
    for key, value in gen.timings.items():
        into[key] = into.get(key, 0.0) + float(value)
    # A request whose prompt was computed from scratch: no reused prefill, no server prefix-cache hit.
    into["prefills"] = into.get("prefills", 0.0) + (1.0 if gen.cached_tokens == 0 else 0.0)


def run_tasks(backend: ModelBackend, content: Sequence[Part], specs: Sequence[TaskSpec],
              settings: Settings, *, page: int | None = None) -> list[TaskOutcome]:
    """Every spec over ``content``: one batched first attempt, then individual re-asks.

    Never raises for a task's validation failure (it becomes the outcome's error record); a
    BackendError/BackendUnavailable of the batched call is recorded on every outcome.
    """
    outcomes = [TaskOutcome(spec) for spec in specs]
    if not specs:
        return outcomes
    try:
        firsts = backend.generate(content, [s.request(settings.temperature, pages=pages_of(content)) for s in specs])
    except DocvlError as exc:
        for outcome in outcomes:
            outcome.error = exc.record()
        return outcomes
    if len(firsts) != len(specs):
        raise RuntimeError(f"backend returned {len(firsts)} generations for {len(specs)} requests")
    for outcome, first in zip(outcomes, firsts, strict=True):
        try:
            outcome.value = repair(backend, content, outcome.spec, settings, first=first, outcome=outcome)
        except RepairFailed as exc:
            outcome.error = ErrorRecord(code=exc.code, message=f"{outcome.spec.name}: {exc.message}", page=page)
        except DocvlError as exc:
            outcome.error = exc.record()
    return outcomes


def repair(backend: ModelBackend, content: Sequence[Part], spec: TaskSpec, settings: Settings, *,
           first: Generation | None = None, outcome: TaskOutcome | None = None) -> BaseModel:
    """Ask (unless ``first`` is the first attempt's reply) and re-ask until a reply validates.

    ``outcome`` (optional) receives raw, attempts, usage and timings as they accrue.
    Raises RepairFailed after ``settings.max_attempts`` attempts, BackendError from the backend.
    """
    state = outcome if outcome is not None else TaskOutcome(spec)
    temperature = settings.temperature
    turns: tuple[Turn, ...] = ()
    gen = first
    problem = ""
    while True:
        if gen is None:
            gen = backend.generate(content, [spec.request(temperature, turns, pages_of(content))])[0]
        state.attempts += 1
        state.raw = gen.text
        state.usage.add(usage_of(gen))
        _add_timings(state.timings, gen)
        try:
            return validate_reply(gen.text, spec.model)
        except (JsonParseError, ValidationError) as exc:
            if gen.finish_reason == "length":
                problem = f"the reply hit the {spec.max_new_tokens}-token limit before the JSON was complete"
                temperature = next_temperature(temperature)
            elif looks_repetitive(gen.text):
                problem = "the reply fell into a repetition loop"
                temperature = next_temperature(temperature)
            else:
                problem = _one_line(exc)
                turns = (Turn(reply=gen.text, feedback=feedback_for(exc)),)
        if state.attempts >= settings.max_attempts:
            raise RepairFailed(
                f"no valid {spec.schema_name} reply after {state.attempts} attempt(s); last problem: {problem}",
                raw=state.raw, attempts=state.attempts, usage=state.usage,
            )
        gen = None


def _one_line(exc: Any) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        return f"{exc.error_count()} validation error(s), first {loc}: {first['msg']}"
    return str(exc)
