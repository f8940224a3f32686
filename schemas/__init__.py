"""Output schemas of docvl: built-in pydantic models, the registry, the decoder-schema helpers and
the checks of a final output (the user's contract, numeric invariants)."""

from docvl.schemas.base import SourcedAmount, SourcedDate, SourcedText, Strict
from docvl.schemas.check import check_schema
from docvl.schemas.commerce import Invoice, LineItem, PurchaseOrder, Receipt
from docvl.schemas.decoder import bind_pages, decoder_schema, max_reply_tokens, reply_schema
from docvl.schemas.documents import FormData, FormField, ScientificPaper, SlideDeck, Tables
from docvl.schemas.from_json import (
    model_from_json_schema,
    model_from_json_schema_file,
    original_json_schema,
)
from docvl.schemas.invariants import check_invariants
from docvl.schemas.registry import BUILTIN, get_schema, list_schemas, schema_name, schema_version
from docvl.schemas.summary import Answer, DocumentSummary, KeyPoint, QuoteRef
from docvl.schemas.validate import conform_output, validate_output

__all__ = [
    "BUILTIN",
    "Answer",
    "DocumentSummary",
    "FormData",
    "FormField",
    "Invoice",
    "KeyPoint",
    "LineItem",
    "PurchaseOrder",
    "QuoteRef",
    "Receipt",
    "ScientificPaper",
    "SlideDeck",
    "SourcedAmount",
    "SourcedDate",
    "SourcedText",
    "Strict",
    "Tables",
    "bind_pages",
    "check_invariants",
    "check_schema",
    "conform_output",
    "decoder_schema",
    "get_schema",
    "list_schemas",
    "max_reply_tokens",
    "model_from_json_schema",
    "model_from_json_schema_file",
    "original_json_schema",
    "reply_schema",
    "schema_name",
    "schema_version",
    "validate_output",
]
