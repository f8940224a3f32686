"""Checking a final (merged) output against the user's own contract.

* A schema loaded from a JSON Schema file is checked with ``jsonschema`` against the file as the
  user wrote it (:func:`~docvl.schemas.from_json.original_json_schema`), with the validator of its
  ``$schema`` (Draft 2020-12 when it names none). As with ``jsonschema.validate``, ``format`` is an
  annotation, not asserted.
* Built-in and Python (``module:Class``) schemas are checked with the pydantic model's
  ``model_validate``.

The pydantic model derived from a JSON Schema file represents an absent optional key as ``None``
(and merging windows fills every key), so :func:`conform_output` turns such a ``None`` back into an
absent key before the data is checked or written out: the output then is what the user's schema
describes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as JsonSchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from pydantic import BaseModel, ValidationError

from docvl.schemas.check import resolve_local_ref
from docvl.schemas.from_json import original_json_schema

#: Problems reported at most (one more line says how many were left out).
MAX_PROBLEMS = 50
#: Longest message kept (jsonschema quotes the offending value, which can be a whole list).
MAX_MESSAGE = 300


def validate_output(model: type[BaseModel], data: Mapping[str, Any] | BaseModel) -> list[str]:
    """The problems of ``data`` against ``model``'s contract, one line each (path: message),
    empty when it is valid.

    A mapping is checked as given (pass it through :func:`conform_output` first); a model instance
    is dumped and conformed here.
    """
    if isinstance(data, BaseModel):
        values: Any = conform_output(model, data.model_dump(mode="json"))
    else:
        values = data
    original = original_json_schema(model)
    if original is not None:
        return _jsonschema_problems(original, values)
    try:
        model.model_validate(values)
    except ValidationError as exc:
        problems = [f"{_path(err['loc'])}: {_short(err['msg'])}" for err in exc.errors()]
        return _capped(problems)
    return []


def conform_output(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` shaped as the user's schema expects.

    For a JSON Schema file: every ``None`` under a key that the user's schema neither requires nor
    allows to be ``null`` is dropped (it stands for an absent key). Built-in and Python schemas: an
    unchanged copy.
    """
    original = original_json_schema(model)
    if original is None:
        return dict(data)
    validator = _validator(original)
    out = _conform(original, dict(data), original, validator, 0)
    return out if isinstance(out, dict) else dict(data)


def _validator(schema: dict[str, Any]) -> Validator:
    cls = validator_for(schema, default=Draft202012Validator)
    return cls(schema)


def _jsonschema_problems(schema: dict[str, Any], data: Any) -> list[str]:
    errors = sorted(_validator(schema).iter_errors(data), key=lambda e: [str(p) for p in e.path])
    return _capped([f"{err.json_path}: {_message(err)}" for err in errors])


def _message(err: JsonSchemaError) -> str:
    text = _short(err.message)
    if err.context:
        # anyOf / oneOf: say why the closest option failed, not only that none matched
        best = min(err.context, key=lambda e: (-len(e.path), len(e.message)))
        text += f" (closest: {best.json_path}: {_short(best.message)})"
    return text


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return [*problems[:MAX_PROBLEMS], f"... and {len(problems) - MAX_PROBLEMS} more"]


def _path(loc: tuple[int | str, ...]) -> str:
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _resolved(node: Any, root: dict[str, Any]) -> Any:
    for _ in range(32):  # a chain of references, never a cycle (from_json refuses recursion)
        if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
            return node
        target = resolve_local_ref(root, node["$ref"])
        if target is None:
            return node
        node = target
    return node


def _branches(node: Any, root: dict[str, Any]) -> list[dict[str, Any]]:
    """The node and its anyOf / oneOf options (references followed), for shape lookups."""
    node = _resolved(node, root)
    if not isinstance(node, dict):
        return []
    out = [node]
    for key in ("anyOf", "oneOf"):
        for sub in node.get(key) or []:
            out.extend(_branches(sub, root))
    return out


def _object_schema(node: Any, root: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    options = [b for b in _branches(node, root) if isinstance(b.get("properties"), dict)]
    for option in options:
        if all(k in option["properties"] for k, v in value.items() if v is not None):
            return option
    return options[0] if options else {}


def _items_schema(node: Any, root: dict[str, Any]) -> Any:
    for option in _branches(node, root):
        if isinstance(option.get("items"), dict | bool):
            return option["items"]
    return None


def _conform(node: Any, value: Any, root: dict[str, Any], validator: Validator, depth: int) -> Any:
    if depth > 64 or node is None:
        return value
    if isinstance(value, dict):
        schema = _object_schema(node, root, value)
        props: dict[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = props.get(key)
            if (
                item is None
                and sub is not None
                and key not in required
                and not validator.evolve(schema=sub).is_valid(None)
            ):
                continue
            out[key] = _conform(sub, item, root, validator, depth + 1)
        return out
    if isinstance(value, list):
        items = _items_schema(node, root)
        return [_conform(items, item, root, validator, depth + 1) for item in value]
    return value
