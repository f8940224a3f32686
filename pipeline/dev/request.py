"""What a request to the test double asks for (see :mod:`docvl.pipeline.dev.double`): the schema of
its reply (:func:`request_schema`), the pages whose records it wants (:func:`asked_pages`), and what
a constrained decoder lets through of a reply (:func:`fit_schema`).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from docvl.pipeline.model.base import GenerationRequest
from docvl.pipeline.tasks.specs import ONLY_PAGES
from docvl.schemas import BUILTIN, get_schema, schema_name
from docvl.schemas.errors import SchemaError

_SCHEMA_IN_INSTRUCTION = re.compile(r"into the '([^']+)' schema")
_ONLY_PAGES_RE = re.compile(re.escape(ONLY_PAGES.split("{pages}")[0]) + r"([\d, ]+)")


def request_schema(request: GenerationRequest) -> tuple[str, type[BaseModel]]:
    """The built-in schema (name, model) a request asks for: the one whose fields are the
    properties of ``request.json_schema``, else the smallest whose fields include them (a user's
    schema for the same document kind: the reply is then fitted to it), else the one the
    instruction names."""
    props = (request.json_schema or {}).get("properties")
    if isinstance(props, dict):
        for name, entry in BUILTIN.items():
            if set(entry.model.model_fields) == set(props):
                return name, entry.model
        wider = [
            (len(e.model.model_fields), n, e.model)
            for n, e in BUILTIN.items()
            if e.extraction and set(props) <= set(e.model.model_fields)
        ]
        if wider:
            _, name, model = min(wider, key=lambda w: w[0])
            return name, model
    if m := _SCHEMA_IN_INSTRUCTION.search(request.instruction):
        try:
            model = get_schema(m[1])
        except SchemaError:
            pass
        else:
            return schema_name(model), model
    raise ValueError("TextLayerModel: cannot tell which schema the request asks for")


def fit_schema(value: Any, schema: Any) -> Any:
    """``value`` with lists cut at ``maxItems``, strings at ``maxLength``, and the keys an object
    with ``additionalProperties: false`` does not list left out, per the JSON ``schema``: what a
    constrained decoder lets through."""
    if not isinstance(schema, dict):
        return value
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        for option in options:
            if _json_type_matches(value, option):
                return fit_schema(value, option)
        return value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        closed = schema.get("additionalProperties") is False
        return {
            k: fit_schema(v, props.get(k)) for k, v in value.items() if not closed or k in props
        }
    if isinstance(value, list):
        cap = schema.get("maxItems")
        items = value[: int(cap)] if isinstance(cap, int) else value
        return [fit_schema(v, schema.get("items")) for v in items]
    if isinstance(value, str):
        cap = schema.get("maxLength")
        return value[: int(cap)] if isinstance(cap, int) else value
    return value


def _json_type_matches(value: Any, schema: Any) -> bool:
    if not isinstance(schema, dict) or "type" not in schema:
        return True
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if value is None:
        kind = "null"
    elif isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        return "integer" in kinds or "number" in kinds
    elif isinstance(value, float):
        kind = "number"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list):
        kind = "array"
    else:
        kind = "object"
    return kind in kinds


def asked_pages(request: GenerationRequest) -> set[int] | None:
    """The pages whose records a re-ask wants (:data:`~docvl.pipeline.tasks.specs.ONLY_PAGES` in its
    instruction); None when it wants every shown page's."""
    asked = _ONLY_PAGES_RE.search(request.instruction)
    return {int(n) for n in re.findall(r"\d+", asked[1])} if asked else None
