"""What a request to the test double asks for (pipeline/dev/request.py)."""

from __future__ import annotations

from docvl.pipeline.dev.request import asked_pages, fit_schema, request_schema
from docvl.pipeline.model.base import GenerationRequest
from docvl.pipeline.tasks.specs import ONLY_PAGES

PARTY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"name": {"type": ["string", "null"]}, "address": {"type": "string"}},
}


def test_fit_schema_leaves_out_what_a_closed_object_does_not_list() -> None:
    value = {"name": "ACME", "address": "1 Road", "tax_id": "DE 1"}
    assert fit_schema(value, PARTY) == {"name": "ACME", "address": "1 Road"}
    opened = {**PARTY, "additionalProperties": True}
    assert fit_schema(value, opened) == value
    # Through anyOf (a nullable reference, inlined) and in the items of a capped list.
    schema = {
        "type": "object",
        "properties": {
            "vendor": {"anyOf": [PARTY, {"type": "null"}]},
            "names": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 3}},
        },
    }
    data = {"vendor": value, "names": ["alpha", "beta", "gamma"]}
    assert fit_schema(data, schema) == {
        "vendor": {"name": "ACME", "address": "1 Road"},
        "names": ["alp", "bet"],
    }
    assert fit_schema({"vendor": None}, schema) == {"vendor": None}


def test_asked_pages_read_the_reask_instruction() -> None:
    line = ONLY_PAGES.format(pages="3, 7", context="4, 8")
    assert asked_pages(GenerationRequest(f"Task: extract ...\n{line}\n")) == {3, 7}
    assert asked_pages(GenerationRequest("Task: extract ...")) is None


def test_a_users_schema_is_answered_as_the_smallest_builtin_holding_its_properties() -> None:
    request = GenerationRequest(
        "x", json_schema={"type": "object", "properties": {"vendor": PARTY, "total": {}}}
    )
    assert request_schema(request)[0] == "invoice"
