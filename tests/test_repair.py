"""The re-ask loop and the batched first attempt, against the scripted backend."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from docvl.pipeline.errors import RAW_REPLY_LIMIT, BackendError, ReplyTooLong
from docvl.pipeline.model.base import Generation, GenerationRequest
from docvl.pipeline.model.scripted import ScriptedBackend
from docvl.pipeline.plan.prompt import Part, TextPart
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.repair import (
    RepairFailed,
    looks_repetitive,
    repair,
    run_tasks,
)
from docvl.pipeline.tasks.specs import task_specs
from docvl.schemas import Answer, DocumentSummary

CONTENT: list[Part] = [
    TextPart("<document 1: a.pdf, 1 pages>\n"),
    TextPart("<page 1>\n"),
    TextPart("Text layer:\nHi\n"),
]
SUMMARY = json.dumps(
    {"title": "T", "summary": "A short summary.", "key_points": [{"point": "p", "pages": [1]}]}
)
ANSWER = json.dumps({"answer": "42", "pages": [1], "quotes": [{"page": 1, "text": "Hi"}]})


class CountingBackend(ScriptedBackend):
    """Counts ``generate`` invocations (one invocation = one prefill)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.invocations: list[int] = []

    def generate(
        self, content: Sequence[Part], requests: Sequence[GenerationRequest]
    ) -> list[Generation]:
        self.invocations.append(len(requests))
        return super().generate(content, requests)


def summary_spec(settings: Settings):  # type: ignore[no-untyped-def]
    return task_specs(settings)[0]


def test_invalid_reply_is_reasked_with_the_errors_then_accepted() -> None:
    settings = Settings()
    backend = CountingBackend(['{"title": "T", "summary": 5}', SUMMARY])
    outcome = run_tasks(backend, CONTENT, [summary_spec(settings)], settings)[0]
    assert outcome.ok and DocumentSummary.model_validate(outcome.data)
    assert outcome.attempts == 2 and outcome.usage.requests == 2
    second = backend.requests[1]
    [turn] = second.turns
    assert turn.reply == '{"title": "T", "summary": 5}'
    assert "summary" in turn.feedback and "string" in turn.feedback.lower()
    assert second.temperature == settings.temperature
    assert outcome.usage.input_tokens == sum(c.generation.input_tokens for c in backend.calls)
    assert outcome.usage.input_tokens > 2 * backend.calls[0].generation.input_tokens - 1


def test_only_the_last_reply_is_kept_in_the_prompt() -> None:
    settings = Settings(max_attempts=3)
    backend = ScriptedBackend(["nope", '{"summary": 1}', SUMMARY])
    repair(backend, CONTENT, summary_spec(settings), settings)
    assert [len(r.turns) for r in backend.requests] == [0, 1, 1]
    assert backend.requests[2].turns[0].reply == '{"summary": 1}'
    assert "could not be used" in backend.requests[1].turns[0].feedback


@pytest.mark.parametrize(
    "reply", [('{"title": "T", "summ', "length"), '{"title": "' + "la " * 100], ids=["cut", "loop"]
)
def test_length_and_repetition_are_never_asked_again(reply: object) -> None:
    settings = Settings(max_attempts=3)
    backend = ScriptedBackend([reply, SUMMARY])
    outcome = run_tasks(backend, CONTENT, [summary_spec(settings)], settings)[0]
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.code == "reply_too_long" and outcome.attempts == 1
    assert len(backend.requests) == 1  # the engine splits the window instead


def test_valid_reply_is_accepted_even_when_cut_off_after_the_json() -> None:
    settings = Settings()
    backend = ScriptedBackend([(SUMMARY + " and then", "length")])
    assert run_tasks(backend, CONTENT, [summary_spec(settings)], settings)[0].ok


def test_final_failure_keeps_raw_attempts_and_usage() -> None:
    settings = Settings(max_attempts=3)
    backend = ScriptedBackend(["{}", "{}", '{"summary": null}'])
    with pytest.raises(RepairFailed) as info:
        repair(backend, CONTENT, summary_spec(settings), settings)
    err = info.value
    assert err.code == "validation_failed" and err.raw == '{"summary": null}' and err.attempts == 3
    assert err.usage.requests == 3
    assert err.usage.input_tokens == sum(c.generation.input_tokens for c in backend.calls)
    assert err.usage.output_tokens == sum(c.generation.output_tokens for c in backend.calls)
    assert "3 attempt" in err.message


def test_several_tasks_share_one_first_call_and_reask_alone() -> None:
    settings = Settings(tasks=("summary", "ask"), question="What?")
    specs = task_specs(settings)

    def reply(content: Sequence[Part], request: GenerationRequest) -> str:
        if "Answer schema" in request.instruction:
            return ANSWER if request.turns else '{"answer": "42", "pages": ["one"]}'
        return SUMMARY

    backend = CountingBackend(reply)
    outcomes = run_tasks(backend, CONTENT, specs, settings)
    assert [o.ok for o in outcomes] == [True, True]
    assert backend.invocations == [2, 1]
    assert Answer.model_validate(outcomes[1].data) and outcomes[1].attempts == 2


def test_run_tasks_records_failures_instead_of_raising() -> None:
    settings = Settings(max_attempts=1)
    outcome = run_tasks(
        ScriptedBackend(["no json here"]), CONTENT, [summary_spec(settings)], settings, page=3
    )[0]
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.code == "validation_failed" and outcome.error.page == 3
    assert outcome.raw == "no json here"

    class Down(ScriptedBackend):
        def generate(
            self, content: Sequence[Part], requests: Sequence[GenerationRequest]
        ) -> list[Generation]:
            raise BackendError("server said 503")

    [down] = run_tasks(Down(), CONTENT, [summary_spec(settings)], settings)
    assert down.error is not None and down.error.code == "backend_error"


def test_helpers() -> None:
    assert looks_repetitive('{"a": "' + "abc " * 40)
    assert looks_repetitive("x" * 100)
    assert not looks_repetitive(SUMMARY)
    assert not looks_repetitive('{"a": [1, 1, 1, 1]}')


def test_an_invalid_reply_is_kept_in_the_error_record() -> None:
    settings = Settings(max_attempts=2)
    [spec] = task_specs(settings)
    last = '{"title": "T", "summary": 42}'  # parses, but fails the schema
    [result] = run_tasks(ScriptedBackend(["not json at all", last]), CONTENT, [spec], settings)
    assert result.error is not None and result.error.code == "validation_failed"
    assert result.error.raw_reply == last and not result.error.raw_reply_truncated
    assert result.error.message.startswith("summary: no valid")


def test_a_long_invalid_reply_is_kept_bounded_and_flagged() -> None:
    settings = Settings(max_attempts=1)
    [spec] = task_specs(settings)
    huge = "é" * (RAW_REPLY_LIMIT)  # 2 bytes a character: twice the limit
    [result] = run_tasks(ScriptedBackend([huge]), CONTENT, [spec], settings)
    assert result.error is not None and result.error.raw_reply is not None
    assert result.error.raw_reply_truncated
    kept = result.error.raw_reply.encode()
    assert len(kept) == RAW_REPLY_LIMIT and huge.encode().startswith(kept)
    # A reply cut off at the token limit is kept too (its record, when it is final).
    with pytest.raises(ReplyTooLong) as caught:
        repair(ScriptedBackend([('{"title": "T", "summ', "length")]), CONTENT, spec, settings)
    assert caught.value.record().raw_reply == '{"title": "T", "summ'
