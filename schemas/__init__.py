"""Output schemas of docvl: built-in pydantic models, the registry and the decoder-schema helper."""

from schemas.base import SourcedAmount, SourcedDate, SourcedText, Strict
from schemas.commerce import Invoice, LineItem, PurchaseOrder, Receipt
from schemas.decoder import bind_pages, decoder_schema, max_reply_tokens
from schemas.documents import FormData, FormField, ScientificPaper, SlideDeck, Tables
from schemas.from_json import model_from_json_schema, model_from_json_schema_file
from schemas.registry import BUILTIN, get_schema, list_schemas, schema_name, schema_version
from schemas.summary import Answer, DocumentSummary, KeyPoint, QuoteRef

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
    "decoder_schema",
    "get_schema",
    "list_schemas",
    "max_reply_tokens",
    "model_from_json_schema",
    "model_from_json_schema_file",
    "schema_name",
    "schema_version",
]
