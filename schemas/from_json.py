"""A JSON Schema file as a pydantic model: one validation path for built-in and user schemas.

Supported (the subset extraction schemas use): ``type`` object / array / string / integer / number /
boolean / null and lists of them, ``properties``, ``required``, ``additionalProperties`` (boolean),
``items``, ``enum``, ``const``, ``anyOf`` / ``oneOf``, local ``$ref`` into ``$defs`` /
``definitions``, ``description``, ``default`` and the bounds ``maxLength``, ``minLength``,
``pattern``, ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``multipleOf``,
``minItems``, ``maxItems``. Anything else (``allOf``, remote references, recursion, tuple
``prefixItems``...) is refused with a :class:`~docvl.schemas.errors.SchemaError` naming the keyword
and where it is, rather than silently ignored.

The file as the user wrote it stays the contract: the generated model class keeps it (parsed) in
``__docvl_json_schema__`` (:func:`original_json_schema`), and the final output is checked against it
(:mod:`docvl.schemas.validate`).

Before anything is converted, :func:`check_schema` looks for a schema that contradicts itself, and
loading refuses it with a :class:`~docvl.schemas.errors.SchemaError` naming every problem and where
it is (so ``docvl`` stops before any page is rendered):

* not a valid JSON Schema (checked against the metaschema of its ``$schema``, Draft 2020-12 when it
  names none);
* a ``$ref`` that points to nothing;
* a key in ``required`` with no entry in ``properties``. This is an error, not a warning: docvl
  shows the model the properties and derives its validation model from them, so it could never ask
  for such a key, and every output would fail the user's own schema.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from docvl.schemas.check import check_schema
from docvl.schemas.errors import SchemaError

_IGNORED = {
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "format",
    "readOnly",
    "writeOnly",
    "deprecated",
}
_BOUNDS = {
    "maxLength": "max_length",
    "minLength": "min_length",
    "pattern": "pattern",
    "minimum": "ge",
    "maximum": "le",
    "exclusiveMinimum": "gt",
    "exclusiveMaximum": "lt",
    "multipleOf": "multiple_of",
    "minItems": "min_length",
    "maxItems": "max_length",
}
_SCALARS: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}
#: The class attribute holding the parsed file on a model made from a JSON Schema.
ORIGINAL_ATTR = "__docvl_json_schema__"


def model_from_json_schema_file(path: Path) -> type[BaseModel]:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemaError(f"cannot read schema file {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"schema file {path} is not valid JSON: {exc}") from exc
    return model_from_json_schema(schema, name=_class_name(path.stem), origin=str(path))


def model_from_json_schema(
    schema: Any, *, name: str = "CustomSchema", origin: str = "schema"
) -> type[BaseModel]:
    if not isinstance(schema, dict):
        raise SchemaError(f"{origin}: a JSON Schema must be an object, got {type(schema).__name__}")
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise SchemaError(
            f'{origin}: the top level must be {{"type": "object", "properties": {{...}}}}'
        )
    problems = check_schema(schema)
    if problems:
        raise SchemaError(f"{origin}: inconsistent JSON Schema: " + "; ".join(problems))
    converter = _Converter(schema, origin)
    model = converter.object_model(schema, name, "#")
    model.__doc__ = str(schema.get("description") or f"Schema loaded from {origin}.")
    setattr(model, ORIGINAL_ATTR, copy.deepcopy(schema))
    return model


def original_json_schema(model: type[BaseModel]) -> dict[str, Any] | None:
    """The JSON Schema a model was made from, as the user wrote it (None for built-in and Python
    models)."""
    original = getattr(model, ORIGINAL_ATTR, None)
    return original if isinstance(original, dict) else None


def _class_name(stem: str) -> str:
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", stem) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "CustomSchema"
    return name if name[0].isalpha() else f"Schema{name}"


class _Converter:
    def __init__(self, root: dict[str, Any], origin: str) -> None:
        self.defs: dict[str, Any] = {**root.get("definitions", {}), **root.get("$defs", {})}
        self.origin = origin
        self.resolving: list[str] = []

    def fail(self, where: str, why: str) -> SchemaError:
        return SchemaError(f"{self.origin}: unsupported JSON Schema at {where}: {why}")

    def object_model(self, node: dict[str, Any], name: str, where: str) -> type[BaseModel]:
        props = node.get("properties", {})
        if not isinstance(props, dict):
            raise self.fail(where, "'properties' must be an object")
        required = set(node.get("required", []))
        extra = node.get("additionalProperties", True)
        if not isinstance(extra, bool):
            raise self.fail(where, "'additionalProperties' must be true or false")
        fields: dict[str, Any] = {}
        for key, sub in props.items():
            if not key.isidentifier() or key.startswith("_"):
                raise self.fail(f"{where}/properties/{key}", "property names must be identifiers")
            typ = self.annotation(sub, f"{name}_{key}", f"{where}/properties/{key}")
            default = (
                ... if key in required else (sub.get("default") if isinstance(sub, dict) else None)
            )
            if key not in required and default is None:
                typ = typ | None
            desc = sub.get("description") if isinstance(sub, dict) else None
            fields[key] = (typ, Field(default, description=desc))
        config = ConfigDict(extra="forbid" if extra is False else "allow")
        model: type[BaseModel] = create_model(_class_name(name), __config__=config, **fields)
        return model

    def annotation(self, node: Any, name: str, where: str) -> Any:
        if node is True or node == {}:
            return Any
        if not isinstance(node, dict):
            raise self.fail(where, "a schema must be an object")
        unknown = (
            set(node)
            - _IGNORED
            - set(_BOUNDS)
            - {
                "type",
                "properties",
                "required",
                "additionalProperties",
                "items",
                "enum",
                "const",
                "anyOf",
                "oneOf",
                "$ref",
                "$defs",
                "definitions",
            }
        )
        if unknown:
            raise self.fail(where, f"keyword(s) {', '.join(sorted(unknown))} not supported")
        if "$ref" in node:
            return self.ref(node["$ref"], where)
        if "const" in node:
            return Literal[node["const"]]
        if "enum" in node:
            values = node["enum"]
            if not isinstance(values, list) or not values:
                raise self.fail(where, "'enum' must be a non-empty list")
            return Literal[tuple(values)]
        for key in ("anyOf", "oneOf"):
            if key in node:
                options = [
                    self.annotation(s, f"{name}_{i}", f"{where}/{key}/{i}")
                    for i, s in enumerate(node[key])
                ]
                if not options:
                    raise self.fail(where, f"'{key}' is empty")
                union = options[0]
                for opt in options[1:]:
                    union = union | opt
                return union
        types = node.get("type")
        if types is None:
            types = "object" if "properties" in node else None
        if types is None:
            return Any
        kinds = types if isinstance(types, list) else [types]
        parts = [self.single(node, str(k), name, where) for k in kinds]
        union = parts[0]
        for part in parts[1:]:
            union = union | part
        return union

    def single(self, node: dict[str, Any], kind: str, name: str, where: str) -> Any:
        bounds = {_BOUNDS[k]: v for k, v in node.items() if k in _BOUNDS}
        if kind == "object":
            return self.object_model(node, name, where)
        if kind == "array":
            items = self.annotation(node.get("items", {}), f"{name}_item", f"{where}/items")
            keep = {k: v for k, v in bounds.items() if k in ("min_length", "max_length")}
            return Annotated[list[items], Field(**keep)] if keep else list[items]  # type: ignore[valid-type]
        if kind not in _SCALARS:
            raise self.fail(where, f"unknown type {kind!r}")
        numeric = {"ge", "le", "gt", "lt", "multiple_of"}
        allowed = {
            "string": {"max_length", "min_length", "pattern"},
            "integer": numeric,
            "number": numeric,
        }.get(kind, set())
        keep = {k: v for k, v in bounds.items() if k in allowed}
        base = _SCALARS[kind]
        return Annotated[base, Field(**keep)] if keep else base

    def ref(self, ref: Any, where: str) -> Any:
        if not isinstance(ref, str) or not re.fullmatch(r"#/(\$defs|definitions)/[^/]+", ref):
            raise self.fail(
                where, f"only local references to #/$defs/NAME are supported, got {ref!r}"
            )
        key = ref.rsplit("/", 1)[-1]
        if key not in self.defs:
            raise self.fail(where, f"reference {ref!r} has no definition")
        if key in self.resolving:
            raise self.fail(where, f"recursive reference {ref!r}")
        self.resolving.append(key)
        try:
            return self.annotation(self.defs[key], key, ref)
        finally:
            self.resolving.pop()
