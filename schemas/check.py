"""JSON Schema consistency checks and local ``$ref`` resolution, shared by the schema loader
(:mod:`docvl.schemas.from_json`), the decoder schema (:mod:`docvl.schemas.decoder`) and validation
(:mod:`docvl.schemas.validate`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for

#: Keywords whose value is a map of names to subschemas / a subschema / a list of subschemas.
SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
SCHEMA_ONE = (
    "items",
    "additionalItems",
    "additionalProperties",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
)
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems", "items")


def check_schema(schema: Any) -> list[str]:
    """What makes a JSON Schema inconsistent, one message each naming the place (a JSON pointer):
    metaschema violations, ``$ref`` to nothing, ``required`` keys without a property. Empty when
    consistent."""
    if not isinstance(schema, dict):
        return [f"a JSON Schema must be an object, got {type(schema).__name__}"]
    cls = validator_for(schema, default=Draft202012Validator)
    problems = [
        f"not a valid JSON Schema at {_pointer(err.absolute_path)}: {err.message}"
        for err in sorted(
            cls(cls.META_SCHEMA).iter_errors(schema), key=lambda e: [str(p) for p in e.path]
        )
    ]
    _check_node(schema, "#", schema, problems)
    return problems


def resolve_local_ref(root: dict[str, Any], ref: str) -> Any:
    """The subschema a local ``$ref`` (``#``, ``#/json/pointer``, ``#anchor``) names in ``root``;
    None when it names nothing (or is not local)."""
    if ref == "#":
        return root
    if ref.startswith("#/"):
        node: Any = root
        for raw in ref[2:].split("/"):
            part = unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node
    if ref.startswith("#") and len(ref) > 1:
        return _anchor(root, ref[1:])
    return None


def _anchor(node: Any, name: str) -> Any:
    if isinstance(node, dict):
        if node.get("$anchor") == name:
            return node
        values: Any = node.values()
    elif isinstance(node, list):
        values = node
    else:
        return None
    for value in values:
        found = _anchor(value, name)
        if found is not None:
            return found
    return None


def _pointer(path: Any) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "#" + "".join(f"/{p}" for p in parts)


def _check_node(node: Any, where: str, root: dict[str, Any], problems: list[str]) -> None:
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#") and resolve_local_ref(root, ref) is None:
        problems.append(f"$ref {ref!r} at {where} points to nothing (no such definition)")
    props = node.get("properties")
    required = node.get("required")
    types = node.get("type")
    is_object = (
        isinstance(props, dict)
        or types == "object"
        or (isinstance(types, list) and "object" in types)
    )
    if is_object and isinstance(required, list):
        known = props if isinstance(props, dict) else {}
        for key in required:
            if isinstance(key, str) and key not in known:
                problems.append(
                    f"required key {key!r} at {where} has no entry in 'properties' "
                    "(add it to 'properties' or remove it from 'required')"
                )
    for keyword in SCHEMA_MAPS:
        subs = node.get(keyword)
        if isinstance(subs, dict):
            for name, sub in subs.items():
                _check_node(sub, f"{where}/{keyword}/{_pointer([name])[2:]}", root, problems)
    for keyword in SCHEMA_ONE:
        if isinstance(node.get(keyword), dict):
            _check_node(node[keyword], f"{where}/{keyword}", root, problems)
    for keyword in _SCHEMA_LISTS:
        subs = node.get(keyword)
        if isinstance(subs, list):
            for i, sub in enumerate(subs):
                _check_node(sub, f"{where}/{keyword}/{i}", root, problems)
