"""Built-in schemas, the registry, JSON Schema files and the bounded decoder schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas import (
    BUILTIN,
    Answer,
    DocumentSummary,
    Invoice,
    decoder_schema,
    get_schema,
    list_schemas,
    max_reply_tokens,
    schema_name,
    schema_version,
)
from schemas.errors import SchemaError


def walk(node: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        out.append(node)
        for key, value in node.items():
            if key == "properties":
                for sub in value.values():
                    out.extend(walk(sub))
            elif key not in ("enum", "const", "default"):
                out.extend(walk(value))
    elif isinstance(node, list):
        for value in node:
            out.extend(walk(value))
    return out


def types_of(node: dict[str, Any]) -> set[str]:
    t = node.get("type")
    return set(t) if isinstance(t, list) else {t} if isinstance(t, str) else set()


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_decoder_schema_is_fully_bounded(name: str) -> None:
    schema = decoder_schema(get_schema(name))
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    for node in walk(schema):
        kinds = types_of(node)
        if "enum" in node or "const" in node:
            continue
        if "string" in kinds:
            assert "maxLength" in node, node
        if kinds & {"number", "integer"}:
            assert "minimum" in node and "maximum" in node, node
        if "number" in kinds:
            assert "multipleOf" in node, node
        if "array" in kinds:
            assert "maxItems" in node, node
        if "object" in kinds or "properties" in node:
            assert node["additionalProperties"] is False
            assert node["required"] == list(node["properties"])
        assert "title" not in node


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_llguidance_accepts_every_decoder_schema(name: str) -> None:
    llguidance = pytest.importorskip("llguidance")
    grammar = llguidance.LLMatcher.grammar_from_json_schema(
        json.dumps(decoder_schema(get_schema(name))), overrides={"whitespace_flexible": False}
    )
    assert grammar


def test_decoder_fills_gaps_and_keeps_existing_bounds() -> None:
    class Loose(BaseModel):
        name: str
        score: float
        tags: list[str]

    schema = decoder_schema(Loose)
    props = schema["properties"]
    assert props["name"]["maxLength"] == 500
    assert props["score"]["minimum"] < 0 < props["score"]["maximum"]
    assert props["tags"]["maxItems"] == 50 and props["tags"]["items"]["maxLength"] == 500
    assert decoder_schema(Answer)["properties"]["answer"]["maxLength"] == 1000


def test_recursive_schema_keeps_refs() -> None:
    class Node(BaseModel):
        label: str
        children: list[Node] = []

    schema = decoder_schema(Node)
    assert "$defs" in schema and "Node" in schema["$defs"]
    assert max_reply_tokens(schema, 4096) == 4096


def test_max_reply_tokens_bounds_small_schemas() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "maxLength": 3}},
        "additionalProperties": False,
        "required": ["a"],
    }
    assert max_reply_tokens(schema, 4096) < 40


def test_builtin_models_forbid_extra_keys_and_check_bounds() -> None:
    DocumentSummary.model_validate(
        {"title": "T", "summary": "S", "key_points": [{"point": "p", "pages": [1]}]}
    )
    with pytest.raises(ValidationError):
        DocumentSummary.model_validate({"summary": "S", "extra": 1})
    with pytest.raises(ValidationError):
        Answer.model_validate({"answer": "x", "pages": [0]})
    with pytest.raises(ValidationError):
        Invoice.model_validate({"line_items": [{"description": "x" * 301, "page": 1}]})


def test_every_extraction_record_carries_pages() -> None:
    for name, entry in BUILTIN.items():
        if not entry.extraction:
            continue
        text = json.dumps(entry.model.model_json_schema())
        assert '"page"' in text or '"pages"' in text, name


def test_registry_names_aliases_and_module_refs() -> None:
    names = list_schemas()
    assert {"invoice", "receipt", "purchase_order", "paper", "slides", "form", "tables"} <= set(
        names
    )
    assert all(isinstance(doc, str) and doc for doc in names.values())
    assert get_schema("Invoice") is Invoice
    assert get_schema("scientific-paper") is get_schema("paper")
    assert get_schema("schemas.commerce:Invoice") is Invoice
    assert schema_name(Invoice) == "invoice" and schema_version(Invoice) == "1.0"


@pytest.mark.parametrize(
    "ref, fragment",
    [
        ("nonsense", "unknown schema"),
        ("", "empty schema name"),
        ("no.such.module:Thing", "cannot import module"),
        ("schemas.commerce:Nope", "has no attribute"),
        ("schemas.commerce:MAX_AMOUNT", "has no attribute"),
        ("json:dumps", "not a pydantic BaseModel"),
        ("missing.json", "does not exist"),
    ],
)
def test_bad_schema_refs_raise_schema_not_found(ref: str, fragment: str) -> None:
    with pytest.raises(SchemaError, match=fragment):
        get_schema(ref)


def test_json_schema_file_becomes_a_validating_model(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "description": "A shipping label.",
        "properties": {
            "tracking": {"type": "string", "maxLength": 30},
            "weight_kg": {"type": "number", "minimum": 0, "maximum": 1000},
            "service": {"enum": ["express", "standard"]},
            "items": {"type": "array", "maxItems": 5, "items": {"$ref": "#/$defs/item"}},
            "note": {"type": ["string", "null"]},
        },
        "required": ["tracking", "items"],
        "additionalProperties": False,
        "$defs": {
            "item": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "page": {"type": "integer"}},
                "required": ["sku"],
                "additionalProperties": False,
            }
        },
    }
    path = tmp_path / "shipping-label.json"
    path.write_text(json.dumps(schema))
    model = get_schema(str(path))
    ok = model.model_validate(
        {"tracking": "1Z", "items": [{"sku": "A", "page": 1}], "service": "express"}
    )
    assert ok.model_dump()["items"][0]["sku"] == "A"
    for bad in (
        {"tracking": "x" * 31, "items": []},
        {"tracking": "1Z", "items": [], "extra": 1},
        {"tracking": "1Z", "items": [], "service": "slow"},
        {"items": []},
        {"tracking": "1Z", "items": [{"sku": "A"}] * 6},
    ):
        with pytest.raises(ValidationError):
            model.model_validate(bad)
    version = schema_version(model)
    assert version.startswith("sha256:") and version == schema_version(get_schema(str(path)))
    assert decoder_schema(model)["properties"]["items"]["items"]["additionalProperties"] is False


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "must be an object"),
        ('{"type": "string"}', "top level must be"),
        ('{"type": "object", "properties": {"a": {"allOf": []}}}', "allOf"),
        (
            '{"type": "object", "properties": {"a": {"$ref": "http://x/y"}}}',
            "only local references",
        ),
        (
            '{"type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}, '
            '"$defs": {"n": {"type": "object", "properties": {"c": {"$ref": "#/$defs/n"}}}}}',
            "recursive",
        ),
    ],
)
def test_unsupported_json_schema_files_are_refused(
    tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(SchemaError, match=fragment):
        get_schema(str(path))


def test_bind_pages_limits_page_fields_to_the_window() -> None:
    from schemas import Invoice, bind_pages, decoder_schema

    bound = bind_pages(decoder_schema(Invoice), [3, 4, 5])
    found: list[dict[str, Any]] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                if name in ("page", "pages"):
                    found.append(sub)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(bound)
    assert found
    text = json.dumps(found)
    assert '"minimum": 3' in text and '"maximum": 5' in text
    assert '"maximum": 100000' not in text
    assert bind_pages(decoder_schema(Invoice), []) == decoder_schema(Invoice)
