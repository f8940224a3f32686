"""Built-in schemas, the registry, JSON Schema files (consistency, the original kept as the
contract), validation of final outputs, and the unbounded and bounded decoder schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from docvl.schemas import (
    BUILTIN,
    Answer,
    DocumentSummary,
    Invoice,
    PurchaseOrder,
    check_schema,
    conform_output,
    decoder_schema,
    get_schema,
    list_schemas,
    max_reply_tokens,
    original_json_schema,
    reply_schema,
    schema_name,
    schema_version,
    validate_output,
)
from docvl.schemas.decoder import DEFAULT_MAX_ITEMS, DEFAULT_MAX_LENGTH
from docvl.schemas.errors import SchemaError

BOUND_KEYWORDS = ("maxItems", "maxLength", "minimum", "maximum", "multipleOf", "minItems")


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

    class Capped(BaseModel):
        code: str = Field(max_length=7)
        rows: list[int] = Field(max_length=3)

    schema = decoder_schema(Loose)
    props = schema["properties"]
    assert props["name"]["maxLength"] == DEFAULT_MAX_LENGTH
    assert props["score"]["minimum"] < 0 < props["score"]["maximum"]
    assert props["tags"]["maxItems"] == DEFAULT_MAX_ITEMS
    assert props["tags"]["items"]["maxLength"] == DEFAULT_MAX_LENGTH
    capped = decoder_schema(Capped)["properties"]
    assert capped["code"]["maxLength"] == 7 and capped["rows"]["maxItems"] == 3
    assert decoder_schema(Answer)["properties"]["answer"]["maxLength"] == DEFAULT_MAX_LENGTH


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
        Answer.model_validate({"answer": "x", "confidence": 1.5})
    with pytest.raises(ValidationError):
        Invoice.model_validate({"line_items": [{"description": "x", "page": 1, "qty": 2}]})


def test_builtin_models_have_no_output_caps() -> None:
    """An 800-line purchase order with long descriptions is valid: the caps a random model needs
    live in the bounded decoder schema only."""
    lines = [
        {
            "description": f"item {i} " + "x" * 600,
            "quantity": 2,
            "amount": 3e12,
            "page": 1 + i // 40,
        }
        for i in range(800)
    ]
    order = PurchaseOrder.model_validate({"lines": lines})
    assert len(order.lines) == 800
    assert validate_output(PurchaseOrder, {"lines": lines}) == []
    summary = {"summary": "s" * 5000, "key_points": [{"point": "p", "pages": [1]}] * 40}
    assert validate_output(DocumentSummary, summary) == []
    for name, entry in BUILTIN.items():
        text = json.dumps(entry.model.model_json_schema())
        assert "maxItems" not in text and "maxLength" not in text, name


def bound_pairs(node: Any) -> set[tuple[str, Any]]:
    return {(k, n[k]) for n in walk(node) for k in BOUND_KEYWORDS if k in n}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_reply_schema_adds_no_bound(name: str) -> None:
    model = get_schema(name)
    schema = reply_schema(model)
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    assert bound_pairs(schema) <= bound_pairs(model.model_json_schema())
    assert not any(k in n for n in walk(schema) for k in ("maxItems", "maxLength", "multipleOf"))
    for node in walk(schema):
        assert "title" not in node
        if "properties" in node:
            assert node["additionalProperties"] is False  # the models forbid extra keys


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_llguidance_accepts_every_reply_schema(name: str) -> None:
    llguidance = pytest.importorskip("llguidance")
    grammar = llguidance.LLMatcher.grammar_from_json_schema(
        json.dumps(reply_schema(get_schema(name))), overrides={"whitespace_flexible": False}
    )
    assert llguidance.LLMatcher.validate_grammar(grammar) == ""


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
    assert get_schema("docvl.schemas.commerce:Invoice") is Invoice
    assert schema_name(Invoice) == "invoice" and schema_version(Invoice) == "2.0"


@pytest.mark.parametrize(
    "ref, fragment",
    [
        ("nonsense", "unknown schema"),
        ("", "empty schema name"),
        ("no.such.module:Thing", "cannot import module"),
        ("docvl.schemas.commerce:Nope", "has no attribute"),
        ("docvl.schemas.commerce:MAX_AMOUNT", "has no attribute"),
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
    from docvl.schemas import Invoice, bind_pages, decoder_schema

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


# --- JSON Schema files: the user's contract ------------------------------------------------------

#: Nested objects and arrays of objects (Draft 2020-12, closed objects, the user's own bounds).
PO_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://example.com/schemas/purchase-order.json",
    "title": "Purchase order",
    "type": "object",
    "properties": {
        "po_number": {"type": "string", "pattern": "^PO-[0-9]{4,}$"},
        "buyer": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "address": {
                    "type": "object",
                    "properties": {
                        "street": {"type": "string"},
                        "city": {"type": "string"},
                        "country": {"type": "string", "minLength": 2, "maxLength": 2},
                    },
                    "required": ["city", "country"],
                    "additionalProperties": False,
                },
            },
            "required": ["name"],
            "additionalProperties": False,
        },
        "lines": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "line_no": {"type": "integer", "minimum": 1},
                    "sku": {"type": "string"},
                    "description": {"type": "string"},
                    "quantity": {"type": "number", "exclusiveMinimum": 0},
                    "unit_price": {"type": "number"},
                    "amount": {"type": "number"},
                    "page": {"type": "integer", "minimum": 1},
                },
                "required": ["line_no", "description", "quantity", "page"],
                "additionalProperties": False,
            },
        },
        "total": {"type": "number"},
    },
    "required": ["po_number", "buyer", "lines"],
    "additionalProperties": False,
}
PO_OK: dict[str, Any] = {
    "po_number": "PO-20418",
    "buyer": {"name": "ACME GmbH", "address": {"city": "Berlin", "country": "DE"}},
    "lines": [
        {"line_no": 1, "sku": "B-12", "description": "Bolts", "quantity": 100, "page": 1},
        {"line_no": 2, "description": "Nuts", "quantity": 2.5, "amount": 5.0, "page": 2},
    ],
}

#: Enums, const and nullable unions (type lists, anyOf with null, oneOf of string or object).
CLAIM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An insurance claim form.",
    "properties": {
        "claim_type": {"enum": ["auto", "home", "health", "travel"]},
        "status": {"type": "string", "enum": ["new", "in_review", "approved", "rejected"]},
        "policy_holder": {"type": ["string", "null"]},
        "incident_date": {"type": ["string", "null"], "format": "date"},
        "amount_claimed": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]},
        "currency": {"const": "EUR"},
        "injured": {"type": "boolean"},
        "witnesses": {
            "type": "array",
            "items": {
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "phone": {"type": ["string", "null"]},
                        },
                        "required": ["name"],
                        "additionalProperties": False,
                    },
                ]
            },
        },
        "notes": {"type": "string"},
    },
    "required": ["claim_type", "status", "policy_holder", "amount_claimed"],
    "additionalProperties": False,
}
CLAIM_OK: dict[str, Any] = {
    "claim_type": "auto",
    "status": "new",
    "policy_holder": None,
    "amount_claimed": 1200.5,
    "currency": "EUR",
    "witnesses": ["J. Doe", {"name": "A. Roe", "phone": None}],
}

#: Draft-07 ``definitions`` reached through ``$ref`` (shared money type, open objects).
BANK_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "definitions": {
        "money": {
            "type": "object",
            "properties": {
                "amount": {"type": "number"},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            },
            "required": ["amount", "currency"],
            "additionalProperties": False,
        },
        "transaction": {
            "type": "object",
            "properties": {
                "date": {"type": "string"},
                "description": {"type": "string"},
                "value": {"$ref": "#/definitions/money"},
                "balance": {"$ref": "#/definitions/money"},
                "page": {"type": "integer", "minimum": 1},
            },
            "required": ["date", "value", "page"],
            "additionalProperties": False,
        },
        "account": {
            "type": "object",
            "properties": {"iban": {"type": "string"}, "holder": {"type": "string"}},
            "required": ["iban"],
        },
    },
    "properties": {
        "account": {"$ref": "#/definitions/account"},
        "opening_balance": {"$ref": "#/definitions/money"},
        "closing_balance": {"$ref": "#/definitions/money"},
        "transactions": {"type": "array", "items": {"$ref": "#/definitions/transaction"}},
    },
    "required": ["account", "transactions"],
}
BANK_OK: dict[str, Any] = {
    "account": {"iban": "DE02120300000000202051", "bank": "extra keys are allowed here"},
    "opening_balance": {"amount": 10.0, "currency": "EUR"},
    "transactions": [
        {"date": "2024-03-01", "value": {"amount": -4.5, "currency": "EUR"}, "page": 1},
    ],
}

REAL_WORLD = {
    "purchase_order": (
        PO_SCHEMA,
        PO_OK,
        [
            ({"po_number": "20418"}, "$.po_number"),
            ({"buyer": {"name": "X", "address": {"city": "B", "country": "DEU"}}}, "country"),
            ({"lines": []}, "$.lines"),
            ({"lines": [{"line_no": 1, "description": "x", "quantity": 0, "page": 1}]}, "[0]"),
            ({"total": "12"}, "$.total"),
            ({"extra": 1}, "'extra' was unexpected"),
        ],
    ),
    "claim": (
        CLAIM_SCHEMA,
        CLAIM_OK,
        [
            ({"claim_type": "boat"}, "$.claim_type"),
            ({"currency": "USD"}, "$.currency"),
            ({"amount_claimed": -1}, "$.amount_claimed"),
            ({"witnesses": [{"phone": "1"}]}, "$.witnesses[0]"),
            ({"notes": None}, "$.notes"),
        ],
    ),
    "bank": (
        BANK_SCHEMA,
        BANK_OK,
        [
            ({"opening_balance": {"amount": 1, "currency": "euro"}}, "opening_balance.currency"),
            ({"transactions": [{"date": "x", "page": 1}]}, "$.transactions[0]"),
            ({"account": {"holder": "X"}}, "$.account"),
        ],
    ),
}


def load_file(tmp_path: Path, name: str, schema: dict[str, Any]) -> type[BaseModel]:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(schema))
    return get_schema(str(path))


@pytest.mark.parametrize("name", sorted(REAL_WORLD))
def test_real_world_schema_files_validate_against_the_original(tmp_path: Path, name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema, good, bad = REAL_WORLD[name]
    assert check_schema(schema) == []
    model = load_file(tmp_path, name, schema)
    assert original_json_schema(model) == schema
    # the data as it leaves the pipeline: through the derived model, merged (every key filled)
    dumped = model.model_validate(good).model_dump(mode="json")
    data = conform_output(model, dumped)
    assert validate_output(model, data) == [] and validate_output(model, good) == []
    jsonschema.validate(data, schema)
    for patch, where in bad:
        wrong = {**good, **patch}
        problems = validate_output(model, wrong)
        assert problems and any(where in p for p in problems), (patch, problems)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)


@pytest.mark.parametrize("name", sorted(REAL_WORLD))
def test_reply_schema_of_a_file_is_the_file(tmp_path: Path, name: str) -> None:
    schema = REAL_WORLD[name][0]
    sent = reply_schema(load_file(tmp_path, name, schema))
    assert "$ref" not in json.dumps(sent) and "title" not in sent
    assert bound_pairs(sent) == bound_pairs(schema)  # the user's bounds, and none added
    assert sent["required"] == schema["required"]
    assert sent.get("additionalProperties") == schema.get("additionalProperties")


def test_absent_keys_are_not_reported_as_nulls(tmp_path: Path) -> None:
    model = load_file(tmp_path, "claim", CLAIM_SCHEMA)
    dumped = model.model_validate(CLAIM_OK).model_dump(mode="json")
    assert dumped["notes"] is None and dumped["injured"] is None  # the derived model's absent
    assert any("$.notes" in p for p in validate_output(model, dumped))  # a mapping: as given
    conformed = conform_output(model, dumped)
    assert "notes" not in conformed and "injured" not in conformed
    assert conformed["policy_holder"] is None  # required and nullable: kept
    assert validate_output(model, model.model_validate(CLAIM_OK)) == []  # an instance: conformed


def test_an_800_line_order_is_valid(tmp_path: Path) -> None:
    model = load_file(tmp_path, "po", PO_SCHEMA)
    lines = [
        {"line_no": i, "description": f"part {i} " + "x" * 400, "quantity": 1, "page": 1 + i // 30}
        for i in range(1, 801)
    ]
    assert validate_output(model, {**PO_OK, "lines": lines}) == []


def test_schema_version_of_a_file_hashes_the_original(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    schema = {**PO_SCHEMA, "description": "A purchase order."}
    first = load_file(tmp_path / "v1", "po", schema)
    second = load_file(tmp_path / "v2", "po", {**schema, "$comment": "reviewed 2024-05"})
    assert first.model_json_schema() == second.model_json_schema()
    assert schema_version(first) != schema_version(second)
    assert schema_version(first) == schema_version(load_file(tmp_path, "po", schema))


def test_required_key_without_property_is_refused_at_load(tmp_path: Path) -> None:
    """The third-party case: ``required`` names a key ``properties`` lacks. docvl used to say ok
    and jsonschema rejected every output; now loading says so."""
    schema = {
        **CLAIM_SCHEMA,
        "required": [*CLAIM_SCHEMA["required"], "signature_date"],
    }
    assert check_schema(schema) == [
        "required key 'signature_date' at # has no entry in 'properties' (add it to "
        "'properties' or remove it from 'required')"
    ]
    with pytest.raises(SchemaError, match=r"required key 'signature_date' at #"):
        load_file(tmp_path, "claim", schema)
    nested = json.loads(json.dumps(BANK_SCHEMA))
    nested["definitions"]["transaction"]["required"].append("booking_id")
    with pytest.raises(SchemaError, match=r"'booking_id' at #/definitions/transaction"):
        load_file(tmp_path, "bank", nested)


def test_ref_to_nothing_is_refused_at_load(tmp_path: Path) -> None:
    schema = json.loads(json.dumps(BANK_SCHEMA))
    schema["properties"]["closing_balance"] = {"$ref": "#/definitions/amount"}
    problems = check_schema(schema)
    assert problems == [
        "$ref '#/definitions/amount' at #/properties/closing_balance points to nothing "
        "(no such definition)"
    ]
    with pytest.raises(SchemaError, match="points to nothing"):
        load_file(tmp_path, "bank", schema)
    deep = {
        "type": "object",
        "properties": {"a": {"type": "array", "items": {"$ref": "#/$defs/row"}}},
        "$defs": {"row": {"type": "object", "properties": {"b": {"$ref": "#/$defs/cell"}}}},
    }
    assert check_schema(deep) == [
        "$ref '#/$defs/cell' at #/$defs/row/properties/b points to nothing (no such definition)"
    ]


def test_invalid_json_schema_is_refused_at_load(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "strng"}}}
    assert check_schema(schema) and "#/properties/a/type" in check_schema(schema)[0]
    with pytest.raises(SchemaError, match="not a valid JSON Schema"):
        load_file(tmp_path, "s", schema)


def test_validate_output_of_builtins_uses_pydantic() -> None:
    data = {"line_items": [{"description": "x", "page": 0}], "total": {"value": "many"}}
    problems = validate_output(Invoice, data)
    assert any(p.startswith("$.line_items[0].page: ") for p in problems), problems
    assert any(p.startswith("$.total.value: ") for p in problems), problems
    assert validate_output(Invoice, Invoice.model_validate({"line_items": []})) == []
    assert conform_output(Invoice, {"total": None}) == {"total": None}
