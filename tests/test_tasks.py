"""Task specs: deterministic instructions, usage errors, per-task output budget."""

from __future__ import annotations

import pytest

from pipeline.errors import SchemaNotFound, UsageError
from pipeline.settings import Settings
from pipeline.tasks.specs import task_specs
from schemas import Answer, DocumentSummary, Invoice


def test_specs_follow_the_task_order_and_models() -> None:
    settings = Settings(
        tasks=("extract", "summary", "ask"), schema_name="invoice", question="Who pays?"
    )
    specs = task_specs(settings)
    assert [s.name for s in specs] == ["extract", "summary", "ask"]
    assert [s.model for s in specs] == [Invoice, DocumentSummary, Answer]
    assert specs[0].schema_name == "invoice" and specs[0].schema_version == "1.0"


def test_instructions_are_deterministic_and_name_what_to_do() -> None:
    settings = Settings(
        tasks=("summary", "ask", "extract"), schema_name="form", question="  What is\n the date? "
    )
    first = [s.instruction for s in task_specs(settings)]
    assert first == [s.instruction for s in task_specs(settings)]
    summary, ask, extract = first
    assert "DocumentSummary" in summary and "<page N>" in summary
    assert "Question: What is the date?\n" in ask
    assert "'form' schema" in extract
    for text in first:
        assert text[0].isalpha() and text.endswith("\n")
        assert "cite pages" in text.lower()


def test_usage_errors() -> None:
    with pytest.raises(UsageError, match="question"):
        task_specs(Settings(tasks=("ask",)))
    with pytest.raises(UsageError, match="question"):
        task_specs(Settings(tasks=("ask",), question="   "))
    with pytest.raises(UsageError, match="schema"):
        task_specs(Settings(tasks=("extract",)))
    with pytest.raises(SchemaNotFound):
        task_specs(Settings(tasks=("extract",), schema_name="no-such-schema"))
    with pytest.raises(UsageError):
        task_specs(Settings(tasks=()))


def test_requests_carry_the_bounded_schema_and_budget() -> None:
    settings = Settings(tasks=("summary", "summary"), max_output_tokens=777)
    [spec] = task_specs(settings)
    request = spec.request(0.7)
    assert (
        request.json_schema == spec.json_schema
        and request.json_schema["additionalProperties"] is False
    )
    assert request.max_new_tokens == spec.max_new_tokens <= 777
    assert request.temperature == 0.7 and request.turns == ()
