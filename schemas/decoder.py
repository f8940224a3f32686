"""The JSON Schema sent to a constrained decoder (llguidance, vLLM ``response_format``).

Two shapes, chosen by ``Settings.decoder_bounds`` (:func:`docvl.pipeline.tasks.specs.make_spec`):

:func:`reply_schema` (the default, for real models) is the user's schema as written: the JSON
Schema file itself for a schema loaded from one, else the pydantic model's JSON Schema, with every
``$ref`` inlined (``$defs`` dropped) unless the schema is recursive and ``title`` keywords dropped.
Nothing is bounded: a real model may emit as many rows and as long strings as the document holds;
the total output budget (``max_tokens``) is the only cap.

:func:`decoder_schema` (only for random-weight models and tests) describes a finite language, which
a model with random weights can still finish (see ../shared/notes/qwen3-vl.md, beside the
repository):

* every ``$ref`` is inlined (``$defs`` dropped) unless the schema is recursive;
* every object has ``additionalProperties: false`` and lists all its properties as ``required``
  (nullable fields are emitted as ``null``: one shape per schema, no optional keys for the decoder
  to wander into);
* every string without ``enum``/``const`` gets a ``maxLength``, every number and integer ``minimum``
  and ``maximum``, every number a ``multipleOf`` (bounded decimals), every array a ``maxItems``;
* ``title`` keywords are dropped (they only cost prompt tokens when the schema is shown to the
  model).

The bounds already in the model are kept; the defaults below fill every gap. They are small on
purpose: a random model tends to fill a string or a list up to its cap, so the caps decide how long
its reply is (the tiny model on samples/invoice.pdf: about 1,400 tokens; with the earlier defaults,
500 and 50, it ran past 4,096). Never use it for a real model: a list longer than
``DEFAULT_MAX_ITEMS`` is silently cut short.

Neither shape says anything about whitespace: the in-process decoder
(:mod:`docvl.pipeline.model.constrain`) and the OpenAI-compatible backend add "no free whitespace"
themselves.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from docvl.schemas.check import SCHEMA_MAPS, SCHEMA_ONE
from docvl.schemas.from_json import original_json_schema

DEFAULT_MAX_LENGTH = 160
DEFAULT_MAX_ITEMS = 10
DEFAULT_MIN_NUMBER = -1e12
DEFAULT_MAX_NUMBER = 1e12
DEFAULT_NUMBER_STEP = 0.0001


def decoder_schema(model: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    """The bounded decoder schema of a pydantic model (or of a JSON Schema dict)."""
    raw = model if isinstance(model, dict) else model.model_json_schema()
    schema = copy.deepcopy(raw)
    defs: dict[str, Any] = schema.pop("$defs", None) or schema.pop("definitions", None) or {}
    recursive = _recursive_defs(defs)
    out: dict[str, Any] = _bound(_inline(schema, defs, recursive, ()))
    if recursive:
        out["$defs"] = {
            name: _bound(_inline(defs[name], defs, recursive, ())) for name in sorted(recursive)
        }
    return out


def reply_schema(model: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    """The unbounded schema of a reply: the user's schema (the original file for a schema loaded
    from JSON Schema), ``$ref`` inlined unless recursive, titles dropped, no bound added."""
    if isinstance(model, dict):
        raw = model
    else:
        raw = original_json_schema(model) or model.model_json_schema()
    schema = copy.deepcopy(raw)
    defs: dict[str, Any] = schema.pop("$defs", None) or schema.pop("definitions", None) or {}
    recursive = _recursive_defs(defs)
    out: dict[str, Any] = _drop_titles(_inline(schema, defs, recursive, ()))
    if recursive:
        out["$defs"] = {
            name: _drop_titles(_inline(defs[name], defs, recursive, ()))
            for name in sorted(recursive)
        }
    return out


def _drop_titles(node: Any) -> Any:
    """``node`` without ``title`` keywords (in schema positions only: a property may be called
    ``title``)."""
    if not isinstance(node, dict):
        return node
    node.pop("title", None)
    for key in SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            node[key] = {name: _drop_titles(sub) for name, sub in node[key].items()}
    for key in SCHEMA_ONE:
        if isinstance(node.get(key), dict):
            node[key] = _drop_titles(node[key])
    for key in (*_SUBSCHEMA_LISTS, "items"):
        if isinstance(node.get(key), list):
            node[key] = [_drop_titles(sub) for sub in node[key]]
    return node


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _refs_in(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(_ref_name(node["$ref"]))
        for value in node.values():
            found |= _refs_in(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs_in(value)
    return found


def _recursive_defs(defs: dict[str, Any]) -> set[str]:
    """Definitions that can reach themselves through references."""
    edges = {name: _refs_in(body) for name, body in defs.items()}
    out: set[str] = set()
    for start in defs:
        seen: set[str] = set()
        stack = list(edges[start])
        while stack:
            name = stack.pop()
            if name == start:
                out.add(start)
                break
            if name in seen or name not in edges:
                continue
            seen.add(name)
            stack.extend(edges[name])
    return out


def _inline(node: Any, defs: dict[str, Any], recursive: set[str], path: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline(v, defs, recursive, path) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = _ref_name(ref)
        if name in recursive:
            return {**{k: v for k, v in node.items() if k != "$ref"}, "$ref": f"#/$defs/{name}"}
        if name not in defs:
            raise ValueError(f"unresolvable $ref {ref!r}")
        extra = {k: v for k, v in node.items() if k != "$ref"}
        merged = {**copy.deepcopy(defs[name]), **extra}
        return _inline(merged, defs, recursive, (*path, name))
    return {
        k: (
            v
            if k in ("enum", "const", "default", "examples")
            else _inline(v, defs, recursive, path)
        )
        for k, v in node.items()
    }


_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def _bound(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node.pop("title", None)
    for key in _SUBSCHEMA_LISTS:
        if isinstance(node.get(key), list):
            node[key] = [_bound(s) for s in node[key]]
    if isinstance(node.get("items"), dict):
        node["items"] = _bound(node["items"])
    types = node.get("type")
    kinds = set(types) if isinstance(types, list) else {types} if isinstance(types, str) else set()
    if "properties" in node or "object" in kinds:
        props = node.setdefault("properties", {})
        for name in props:
            props[name] = _bound(props[name])
        node["additionalProperties"] = False
        node["required"] = list(props)
        node.pop("patternProperties", None)
    if "enum" in node or "const" in node:
        return node
    if "string" in kinds and "maxLength" not in node:
        node["maxLength"] = max(DEFAULT_MAX_LENGTH, int(node.get("minLength", 0)))
    if kinds & {"number", "integer"}:
        if "minimum" not in node and "exclusiveMinimum" not in node:
            node["minimum"] = DEFAULT_MIN_NUMBER
        if "maximum" not in node and "exclusiveMaximum" not in node:
            node["maximum"] = DEFAULT_MAX_NUMBER
        if "number" in kinds and "integer" not in kinds and "multipleOf" not in node:
            node["multipleOf"] = DEFAULT_NUMBER_STEP
    if "array" in kinds:
        if "items" not in node and "prefixItems" not in node:
            node["items"] = {"type": "string", "maxLength": DEFAULT_MAX_LENGTH}
        if "maxItems" not in node:
            node["maxItems"] = max(DEFAULT_MAX_ITEMS, int(node.get("minItems", 0)))
    return node


def max_reply_tokens(schema: dict[str, Any], cap: int) -> int:
    """An upper bound on the tokens of any reply ``schema`` allows (no free whitespace), at most
    ``cap``.

    Counted in UTF-8 bytes of the longest serialisation (a token is at least one byte); a string
    char counts 6 (a ``\\uXXXX`` escape). Unbounded or recursive parts give ``cap``.
    """
    try:
        return min(cap, _max_len(schema, 0, cap) + 1)
    except _Unbounded:
        return cap


class _Unbounded(Exception):
    pass


def _max_len(node: Any, depth: int, cap: int) -> int:
    if not isinstance(node, dict) or depth > 32 or "$ref" in node:
        raise _Unbounded
    options = [s for key in ("anyOf", "oneOf") for s in node.get(key, [])]
    if options:
        return max(_max_len(s, depth + 1, cap) for s in options)
    if "enum" in node or "const" in node:
        import json

        values = node.get("enum", [node.get("const")])
        return max(len(json.dumps(v).encode()) for v in values)
    types = node.get("type")
    kinds = types if isinstance(types, list) else [types]
    best = 0
    for kind in kinds:
        if kind == "string":
            if "maxLength" not in node or "format" in node or "pattern" in node:
                raise _Unbounded
            size = 2 + 6 * int(node["maxLength"])
        elif kind in ("number", "integer"):
            size = 32
        elif kind in ("boolean", "null"):
            size = 5
        elif kind == "array":
            if "maxItems" not in node or not isinstance(node.get("items"), dict):
                raise _Unbounded
            size = 2 + int(node["maxItems"]) * (_max_len(node["items"], depth + 1, cap) + 1)
        elif kind == "object":
            props = node.get("properties", {})
            size = 2 + sum(len(name) + 4 + _max_len(s, depth + 1, cap) for name, s in props.items())
        else:
            raise _Unbounded
        best = max(best, size)
        if best > cap:
            return best
    return best


PAGE_FIELDS = ("page", "pages")


def bind_pages(schema: dict[str, Any], pages: list[int]) -> dict[str, Any]:
    """A copy of a decoder schema whose ``page``/``pages`` fields only allow the pages shown.

    A constrained decoder then cannot cite a page that is not in the prompt (the validation model
    keeps its own, wider bounds). ``pages`` are the page numbers of the window; empty leaves the
    schema as is.
    """
    if not pages:
        return schema
    low, high = min(pages), max(pages)
    out = copy.deepcopy(schema)

    def clamp(node: Any) -> None:
        if not isinstance(node, dict):
            return
        for key in _SUBSCHEMA_LISTS:
            for sub in node.get(key, []) if isinstance(node.get(key), list) else []:
                clamp(sub)
        if isinstance(node.get("items"), dict):
            clamp(node["items"])
        types = node.get("type")
        if types == "integer" or (isinstance(types, list) and "integer" in types):
            node["minimum"], node["maximum"] = low, high

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                if name in PAGE_FIELDS:
                    clamp(sub)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    return out
