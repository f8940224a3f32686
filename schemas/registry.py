"""Finding schemas by name: built-ins, ``module:Class`` and JSON Schema files.

``get_schema`` accepts
* a built-in name (``invoice``; see :func:`list_schemas`);
* ``package.module:ClassName`` naming a pydantic ``BaseModel`` subclass importable from
  ``sys.path``;
* a path to a ``.json`` file holding a JSON Schema (checked for consistency and converted by
  :mod:`docvl.schemas.from_json`; the model keeps the file as the contract).
Anything else raises :class:`~docvl.schemas.errors.SchemaError` saying what was tried.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from docvl.schemas.commerce import Invoice, PurchaseOrder, Receipt
from docvl.schemas.documents import FormData, ScientificPaper, SlideDeck, Tables
from docvl.schemas.errors import SchemaError
from docvl.schemas.from_json import model_from_json_schema_file, original_json_schema
from docvl.schemas.summary import Answer, DocumentSummary


@dataclass(frozen=True)
class SchemaEntry:
    name: str
    model: type[BaseModel]
    version: str
    #: False for task outputs (summary, answer) that are not offered to ``--schema``.
    extraction: bool = True


#: 2.0: no output-size caps in the contract any more (list and string lengths, number ranges): a
#: consumer that relied on them (a 300-character column, at most 200 lines) sees longer values.
_ENTRIES: tuple[SchemaEntry, ...] = (
    SchemaEntry("invoice", Invoice, "2.0"),
    SchemaEntry("purchase_order", PurchaseOrder, "2.0"),
    SchemaEntry("receipt", Receipt, "2.0"),
    SchemaEntry("paper", ScientificPaper, "2.0"),
    SchemaEntry("slides", SlideDeck, "2.0"),
    SchemaEntry("form", FormData, "2.0"),
    SchemaEntry("tables", Tables, "2.0"),
    SchemaEntry("summary", DocumentSummary, "2.0", extraction=False),
    SchemaEntry("answer", Answer, "2.0", extraction=False),
)
BUILTIN: dict[str, SchemaEntry] = {e.name: e for e in _ENTRIES}
_BY_MODEL: dict[type[BaseModel], SchemaEntry] = {e.model: e for e in _ENTRIES}
ALIASES = {
    "scientific_paper": "paper",
    "slide_deck": "slides",
    "form_fields": "form",
    "table": "tables",
    "po": "purchase_order",
    "document_summary": "summary",
}


def list_schemas() -> dict[str, str]:
    """Built-in schema names and the first line of each model's docstring (sorted by name)."""
    return {name: _first_line(BUILTIN[name].model) for name in sorted(BUILTIN)}


def _first_line(model: type[BaseModel]) -> str:
    return (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else model.__name__


def get_schema(name: str) -> type[BaseModel]:
    """A schema model by built-in name, ``module:Class`` or path to a JSON Schema file."""
    ref = name.strip()
    if not ref:
        raise SchemaError("empty schema name; use one of: " + ", ".join(sorted(BUILTIN)))
    key = ref.lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key in BUILTIN:
        return BUILTIN[key].model
    if ref.endswith(".json") or Path(ref).is_file():
        path = Path(ref).expanduser()
        if not path.is_file():
            raise SchemaError(f"schema file {ref} does not exist")
        return model_from_json_schema_file(path)
    if ":" in ref:
        return _import_model(ref)
    raise SchemaError(
        f"unknown schema {ref!r}: use a built-in name ({', '.join(sorted(BUILTIN))}), "
        "'package.module:ClassName' or a path to a .json JSON Schema file"
    )


def _import_model(ref: str) -> type[BaseModel]:
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise SchemaError(f"schema {ref!r}: expected 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is a bad --schema
        raise SchemaError(f"schema {ref!r}: cannot import module {module_name!r}: {exc}") from exc
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SchemaError(f"schema {ref!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        raise SchemaError(f"schema {ref!r}: {attr} is not a pydantic BaseModel subclass")
    return obj


def schema_name(model: type[BaseModel]) -> str:
    """The registry name of a built-in model, else ``module:Class`` (or the class name)."""
    entry = _BY_MODEL.get(model)
    if entry is not None:
        return entry.name
    module = getattr(model, "__module__", "")
    return (
        f"{module}:{model.__qualname__}" if module and module != "pydantic.main" else model.__name__
    )


def schema_version(model: type[BaseModel]) -> str:
    """A built-in's declared version; else a class ``schema_version`` attribute; else a content hash
    (``sha256:`` + 12 hex digits of the canonical JSON Schema: the file as written for a schema
    loaded from one, else the model's), so any change to a custom schema shows."""
    entry = _BY_MODEL.get(model)
    if entry is not None:
        return entry.version
    declared = getattr(model, "schema_version", None)
    if isinstance(declared, str):
        return declared
    schema = original_json_schema(model) or model.model_json_schema()
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:12]
