"""Extraction that loses no record, shown on the model-contract double (pipeline/dev/double.py):
a model that answers from the text layers in its prompt and stops at ``max_tokens`` with
``finish_reason: length``, as a server does. Documents and truth come from pipeline/dev/synth.py.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft202012Validator

from docvl import commands
from docvl.api import analyze
from docvl.cli import main
from docvl.pipeline.dev import synth
from docvl.pipeline.dev.double import TextLayerModel
from docvl.pipeline.engine import Engine
from docvl.pipeline.errors import SchemaNotFound
from docvl.pipeline.plan import planner
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.result import ResultEnvelope
from docvl.pipeline.settings import Settings

USER_INVOICE_SCHEMA = Path(__file__).parent / "data" / "invoice.schema.json"
#: Small page images: the double reads text layers only.
RENDER = {"dpi": 36, "min_pixels": 32 * 32, "max_pixels": 64 * 32 * 32}


def extract(
    path: Path, schema: str, model: TextLayerModel | None = None, **over: Any
) -> tuple[ResultEnvelope, TextLayerModel]:
    model = model if model is not None else TextLayerModel()
    settings = Settings(tasks=("extract",), schema_name=schema, **{**RENDER, **over})
    [envelope] = Engine(settings, model, TokenCounter()).analyze([path])
    return envelope, model


def quotes(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(r.get("quote")) for r in records)


@pytest.fixture(scope="module")
def purchase_order(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("po") / "po.pdf"
    return path, synth.purchase_order(path)


def test_the_800_line_purchase_order_comes_back_whole(
    purchase_order: tuple[Path, dict[str, Any]],
) -> None:
    path, truth = purchase_order
    envelope, model = extract(path, "purchase_order")
    assert envelope.status == "ok", envelope.errors
    assert envelope.extraction is not None
    lines = envelope.extraction.data["lines"]
    assert quotes(lines) == quotes(truth["lines"])  # all 800, none duplicated
    assert len(lines) == 800
    items = [g for g in envelope.extraction.grounding.items if g.path.startswith("lines[")]
    assert len(items) == 800
    for g in items:  # every line found on its page, with the box of its words
        assert g.status == "grounded" and g.bbox is not None and g.page == g.pages[0]
        x0, y0, x1, y1 = g.bbox
        assert 0 <= x0 < x1 <= 595.5 and 0 <= y0 < y1 <= 842.5
    # Output-aware segments: no reply was ever cut off.
    assert all(c.generation.finish_reason == "stop" for c in model.calls)
    assert {p.status for p in envelope.extraction.completeness.pages} == {"complete"}


def test_the_120_row_page_comes_back_complete(tmp_path: Path) -> None:
    truth = synth.table_page(tmp_path / "table.pdf")
    envelope, model = extract(tmp_path / "table.pdf", "tables", max_output_tokens=4096)
    assert envelope.status == "ok", envelope.errors
    assert envelope.extraction is not None
    assert quotes(envelope.extraction.data["rows"]) == quotes(truth["rows"])
    # The page's reply did not fit the first budget: it was asked again with a larger one.
    budgets = [c.request.max_new_tokens for c in model.calls]
    assert model.calls[0].generation.finish_reason == "length" and budgets == sorted(set(budgets))


def test_rows_across_page_breaks_come_back_once_and_whole(tmp_path: Path) -> None:
    truth = synth.split_rows(tmp_path / "split.pdf")
    envelope, _ = extract(tmp_path / "split.pdf", "purchase_order", max_output_tokens=4096)
    assert envelope.extraction is not None and len(envelope.plan.windows) > 1
    lines = envelope.extraction.data["lines"]
    assert len(lines) == len(truth["lines"])
    by_sku = {line["sku"]: line for line in lines}
    for split in synth.split_lines(truth):  # whole: the segment saw the page that follows
        assert by_sku[split["sku"]]["quantity"] == split["quantity"]
        assert by_sku[split["sku"]]["page"] == split["page"]


@pytest.mark.parametrize("budget", [1500, 900])
def test_rows_across_page_breaks_in_one_page_segments_come_back_once_and_whole(
    tmp_path: Path, budget: int
) -> None:
    """Budgets so small that every segment is one page: no overlap, so each split row first comes
    back as a fragment of the page where it starts (its figures null). At 900 some pages' replies
    are cut off too. Each split row must come back once, whole, where it starts."""
    truth = synth.split_rows(tmp_path / "split.pdf")
    model = TextLayerModel(token_probability=0.9)
    envelope, _ = extract(tmp_path / "split.pdf", "purchase_order", model, max_output_tokens=budget)
    assert envelope.extraction is not None
    assert [(w.first_page, w.last_page) for w in envelope.plan.windows] == [
        (p, p) for p in range(1, 7)
    ]
    assert envelope.status == "ok", envelope.errors
    assert envelope.extraction.data["lines"] == truth["lines"]  # once each, whole, in page order
    split_pages = sorted(line["page"] for line in synth.split_lines(truth))
    assert split_pages == [1, 2, 4, 5]
    assert set(split_pages) <= set(envelope.extraction.completeness.reasked_pages)
    for page in split_pages:  # asked with the page that follows, for that page's records only
        asked = [c for c in model.calls if c.pages == (page, page + 1)]
        assert asked and all(f"begin on page(s) {page}." in c.request.instruction for c in asked)
    # Re-asked records carry the re-ask's confidence, like first-pass records.
    items = [g for g in envelope.extraction.grounding.items if g.path.startswith("lines[")]
    assert len(items) == 72
    assert all(g.model_confidence == pytest.approx(0.9) for g in items)
    assert all(g.status == "grounded" and g.confidence == pytest.approx(0.9) for g in items)


def test_a_length_reply_splits_never_repeats(
    purchase_order: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, truth = purchase_order
    # A planner that underestimates replies threefold: the model stops at the limit.
    monkeypatch.setattr(planner, "REPLY_PER_TEXT_TOKEN", 1.0)
    envelope, model = extract(path, "purchase_order", max_output_tokens=4096)
    assert envelope.extraction is not None
    assert quotes(envelope.extraction.data["lines"]) == quotes(truth["lines"])
    asked = [(c.request.max_new_tokens, c.pages) for c in model.calls]
    cut = [i for i, c in enumerate(model.calls) if c.generation.finish_reason == "length"]
    assert cut  # the planner's estimate was wrong on purpose
    for i in cut:  # a request that was cut off is never sent again: its pages were split
        assert asked[i] not in asked[i + 1 :]


def test_the_inconsistent_invoice_carries_its_invariant_warnings(tmp_path: Path) -> None:
    truth = synth.bad_invoice(tmp_path / "bad.pdf")
    envelope, _ = extract(tmp_path / "bad.pdf", "invoice")
    assert envelope.extraction is not None
    assert len(envelope.extraction.data["line_items"]) == len(truth["line_items"])
    warnings = " ".join(envelope.warnings)
    assert "subtotal" in warnings and "total" in warnings, envelope.warnings
    assert envelope.status == "ok"  # the document says so: reported, not an extraction failure


def _write_schema(tmp_path: Path, **lines: Any) -> Path:
    item = {
        "type": "object",
        "properties": {
            "sku": {"type": ["string", "null"]},
            "quote": {"type": ["string", "null"]},
            "page": {"type": "integer"},
        },
    }
    schema = {
        "type": "object",
        "required": ["lines"],
        "properties": {"lines": {"type": "array", "items": item, **lines}},
    }
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    return path


def test_an_inconsistent_user_schema_is_refused_before_any_page(tmp_path: Path) -> None:
    path = _write_schema(tmp_path)
    schema = json.loads(path.read_text())
    schema["required"].append("buyer_reference")  # required, but not among the properties
    path.write_text(json.dumps(schema))
    with pytest.raises(SchemaNotFound, match="buyer_reference"):
        Engine(
            Settings(tasks=("extract",), schema_name=str(path)), TextLayerModel(), TokenCounter()
        )


def test_a_record_is_ok_only_when_the_users_own_schema_accepts_it(tmp_path: Path) -> None:
    """Each segment's reply has at most 30 lines, so it validates; the merged 72 lines break the
    user's ``maxItems``: the final check against their schema must catch it."""
    synth.split_rows(tmp_path / "doc.pdf")
    path = _write_schema(tmp_path, maxItems=30)
    envelope, _ = extract(tmp_path / "doc.pdf", str(path), max_output_tokens=4096)
    assert envelope.extraction is not None and len(envelope.extraction.data["lines"]) == 72
    assert envelope.status == "partial"
    assert any(e.code == "validation_failed" and "lines" in e.message for e in envelope.errors)
    ok, _ = extract(tmp_path / "doc.pdf", str(_write_schema(tmp_path)), max_output_tokens=4096)
    assert ok.status == "ok", ok.errors


def test_a_third_party_invoice_schema_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JSON Schema written in the style of public invoice schemas (tests/data: ``$defs`` and
    ``$ref``, an ISO 4217 enum, ``format: date``, a pattern, closed objects, a nested array of
    lines), given as a user gives it (``--schema path.json``), on a 3-page invoice: every line
    comes back once, the data validates against the file as written (formats checked too), and
    every value is grounded on its page."""
    pdf = tmp_path / "invoice.pdf"
    truth = synth.invoice(pdf, lines=60, pages=3)
    given: dict[str, Any] = {}  # the settings the CLI builds from the user's flags

    def capture(args: object, overrides: dict[str, Any]) -> int:
        given.update(overrides)
        return 0

    monkeypatch.setattr(commands, "run", capture)
    assert main(["run", str(pdf), "--task", "extract", "--schema", str(USER_INVOICE_SCHEMA)]) == 0
    settings = commands.model_settings(given).model_copy(update=RENDER)
    model = TextLayerModel()
    [envelope] = analyze([pdf], settings, backend=model)
    assert envelope.status == "ok", envelope.errors
    extraction = envelope.extraction
    assert extraction is not None and extraction.schema_version.startswith("sha256:")
    data = extraction.data
    schema = json.loads(USER_INVOICE_SCHEMA.read_text())
    checker = Draft202012Validator.FORMAT_CHECKER
    jsonschema.validate(data, schema, cls=Draft202012Validator, format_checker=checker)
    assert quotes(data["line_items"]) == quotes(truth["line_items"])  # all 60, none twice
    assert data["line_items"] == truth["line_items"]
    assert set(data["vendor"]) == {"name", "address"}  # fitted to the closed party object
    assert data["vendor"]["name"] == truth["vendor"]["name"]
    for key in ("invoice_number", "issue_date", "due_date", "currency", "subtotal", "tax", "total"):
        assert data[key] == truth[key], key
    assert data["total"]["page"] == 3
    # Every sourced value and every line: found on its page, with the box of its words.
    items = extraction.grounding.items
    assert len(items) == 60 + 11 and extraction.grounding.grounded == len(items)
    assert all(g.bbox is not None and g.page in g.pages for g in items)
    pages = {c.pages for c in model.calls}
    assert set().union(*pages) == {1, 2, 3}
