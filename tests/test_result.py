"""The envelope: exported JSON Schema is valid and every produced record validates against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from test_analyze import SETTINGS, make_pdf, reply

from docvl.pipeline.engine import Engine
from docvl.pipeline.errors import ErrorRecord
from docvl.pipeline.model.scripted import ScriptedBackend
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.result import (
    ResultEnvelope,
    Source,
    Usage,
    envelope_json_schema,
)
from docvl.pipeline.settings import Settings


def structural_check(node: Any) -> None:
    """A JSON Schema without the jsonschema package: keywords have the right JSON types, refs
    resolve."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("properties", "$defs"):
                assert isinstance(value, dict)
                for sub in value.values():
                    structural_check(sub)
            elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
                assert isinstance(value, list) and value
                for sub in value:
                    structural_check(sub)
            elif key in ("items", "additionalProperties"):
                assert isinstance(value, dict | bool)
                structural_check(value)
            elif key == "required":
                assert isinstance(value, list) and all(isinstance(v, str) for v in value)
            elif key == "type":
                assert value in (
                    "object",
                    "array",
                    "string",
                    "integer",
                    "number",
                    "boolean",
                    "null",
                ) or (isinstance(value, list))
            elif key == "$ref":
                assert isinstance(value, str) and value.startswith("#/$defs/")


def test_exported_schema_is_valid_json_schema() -> None:
    schema = envelope_json_schema()
    json.dumps(schema)
    structural_check(schema)
    defs = schema["$defs"]
    refs = {r.rsplit("/", 1)[-1] for r in _refs(schema)}
    assert refs <= set(defs)
    assert {"schema_version", "source", "status", "errors", "usage", "timings", "plan"} <= set(
        schema["properties"]
    )
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return ([node["$ref"]] if "$ref" in node else []) + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_produced_record_validates(tmp_path: Path) -> None:
    pdf = tmp_path / "doc.pdf"
    doc = pymupdf.open()
    for n in range(2):
        doc.new_page(width=300, height=400).insert_text(
            (36, 60), f"Item number {n + 1} costs {(n + 1) * 10}.00 EUR"
        )
    doc.save(pdf)
    doc.close()
    counter = TokenCounter()
    records = [
        Engine(Settings(**SETTINGS), ScriptedBackend(reply), counter).analyze([pdf])[0],
        Engine(
            Settings(**{**SETTINGS, "max_attempts": 1}), ScriptedBackend(lambda c, r: "x"), counter
        ).analyze([pdf])[0],
        Engine(Settings(**SETTINGS), ScriptedBackend(reply), counter).analyze(
            [tmp_path / "nope.pdf"]
        )[0],
        ResultEnvelope(
            source=Source(path="a.pdf"),
            status="failed",
            errors=[ErrorRecord(code="corrupt_document", message="bad xref", page=3)],
        ),
        ResultEnvelope(
            source=Source(path="b.pdf", sha256="0" * 64),
            status="skipped",
            warnings=["unchanged since last run"],
        ),
    ]
    assert [r.status for r in records] == ["ok", "failed", "failed", "failed", "skipped"]
    schema = envelope_json_schema()
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schema)
    for record in records:
        data = json.loads(record.model_dump_json())
        validator.validate(data)
        assert ResultEnvelope.model_validate(data) == record


def test_usage_adds_and_prices() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=0, requests=1)
    usage.add(Usage(input_tokens=0, output_tokens=1_000_000, cached_tokens=5, requests=2))
    assert usage.priced(0.08, 0.5).cost_usd == pytest.approx(0.58)
    assert (usage.requests, usage.cached_tokens) == (3, 5)


def test_an_invalid_reply_is_kept_in_the_documents_record(tmp_path: Path) -> None:
    """A reply that fails the user's schema after every re-ask: the document's record keeps it."""
    bad = '{"form_title": null, "fields": "not a list"}'
    settings = Settings(**{**SETTINGS, "tasks": ("extract",), "max_attempts": 2})
    path = make_pdf(tmp_path / "a.pdf", 1)
    [env] = Engine(settings, ScriptedBackend(lambda c, r: bad), TokenCounter()).analyze([path])
    assert env.status == "failed" and env.schema_version == "1.3"
    [error] = env.errors
    assert error.code == "validation_failed" and error.raw_reply == bad
    assert error.raw_reply_truncated is False
    again = ResultEnvelope.model_validate_json(env.model_dump_json())
    assert again.errors[0].raw_reply == bad
    props = envelope_json_schema()["$defs"]["ErrorRecord"]["properties"]
    assert {"raw_reply", "raw_reply_truncated"} <= set(props)
