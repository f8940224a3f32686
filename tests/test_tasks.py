"""Task specs: deterministic instructions, usage errors, the decoder schema (the user's, unbounded,
by default; bounded only when asked) and the output budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from docvl.pipeline.errors import SchemaNotFound, UsageError
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.specs import task_specs
from docvl.schemas import Answer, DocumentSummary, Invoice, decoder_schema, reply_schema

CAPS = ("maxItems", "maxLength", "multipleOf")


def nodes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node, *(n for v in node.values() for n in nodes(v))]
    if isinstance(node, list):
        return [n for v in node for n in nodes(v)]
    return []


def test_specs_follow_the_task_order_and_models() -> None:
    settings = Settings(
        tasks=("extract", "summary", "ask"), schema_name="invoice", question="Who pays?"
    )
    specs = task_specs(settings)
    assert [s.name for s in specs] == ["extract", "summary", "ask"]
    assert [s.model for s in specs] == [Invoice, DocumentSummary, Answer]
    assert specs[0].schema_name == "invoice" and specs[0].schema_version == "2.0"


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


def test_requests_carry_the_unbounded_schema_and_the_whole_budget() -> None:
    settings = Settings(tasks=("summary", "summary", "extract"), schema_name="po")
    assert settings.decoder_bounds is False
    summary, extract = task_specs(settings.model_copy(update={"max_output_tokens": 7777}))
    assert summary.json_schema == reply_schema(DocumentSummary)
    for spec in (summary, extract):
        request = spec.request(0.7)
        assert request.json_schema == spec.json_schema
        assert request.json_schema["additionalProperties"] is False
        assert not [n for n in nodes(request.json_schema) if any(k in n for k in CAPS)]
        assert "maximum" not in json.dumps(request.json_schema)
        assert request.max_new_tokens == spec.max_new_tokens == 7777
        assert request.temperature == 0.7 and request.turns == ()
    # the window's pages still bound the page fields
    bound = extract.request(0.0, pages=[4, 5, 6]).json_schema
    pages = [n for n in nodes(bound) if n.get("type") == "integer"]
    assert pages and all((n["minimum"], n["maximum"]) == (4, 6) for n in pages)


def test_bounds_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(tasks=("summary", "extract"), schema_name="invoice", decoder_bounds=True)
    summary, extract = task_specs(settings.model_copy(update={"max_output_tokens": 777}))
    assert summary.json_schema == decoder_schema(DocumentSummary)
    assert extract.json_schema == decoder_schema(Invoice)
    assert summary.max_new_tokens <= 777 and extract.max_new_tokens <= 777
    assert any("maxItems" in n for n in nodes(extract.json_schema))
    monkeypatch.setenv("DOCVL_DECODER_BOUNDS", "1")
    assert Settings().decoder_bounds is True
    # the bounds change results: they are part of the cache identity
    assert Settings().fingerprint() != Settings(decoder_bounds=False).fingerprint()


def test_file_schema_is_decoded_and_shown_as_written(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "description": "A delivery note.",
        "properties": {
            "note_number": {"type": "string", "pattern": "^DN-[0-9]+$"},
            "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "maxItems": 500},
            "signed": {"type": "boolean"},
        },
        "required": ["note_number", "items"],
        "additionalProperties": False,
        "$defs": {
            "item": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "page": {"type": "integer"}},
                "required": ["sku"],
            }
        },
    }
    path = tmp_path / "delivery-note.json"
    path.write_text(json.dumps(schema))
    [spec] = task_specs(Settings(tasks=("extract",), schema_name=str(path)))
    assert spec.json_schema["properties"]["items"] == {
        "type": "array",
        "items": schema["$defs"]["item"],
        "maxItems": 500,  # the user's own bound stays
    }
    assert spec.json_schema["required"] == ["note_number", "items"]  # "signed" stays optional
    assert '"signed":{"type":"boolean"}' in spec.instruction  # the file, not a derived schema


def test_inconsistent_file_schema_fails_before_any_document(tmp_path: Path) -> None:
    path = tmp_path / "third-party.json"
    path.write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {"invoice_no": {"type": "string"}},
                "required": ["invoice_no", "signature"],
            }
        )
    )
    with pytest.raises(SchemaNotFound, match="required key 'signature' at #"):
        task_specs(Settings(tasks=("extract",), schema_name=str(path)))
    path.write_text(json.dumps({"type": "object", "properties": {"a": {"$ref": "#/$defs/b"}}}))
    with pytest.raises(SchemaNotFound, match=r"\$ref '#/\$defs/b' at #/properties/a"):
        task_specs(Settings(tasks=("extract",), schema_name=str(path)))
