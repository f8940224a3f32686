"""Completeness: table-like lines, per-page status, re-asks (pipeline/tasks/completeness.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from mergekit import item

from docvl.pipeline.model.base import GenerationRequest
from docvl.pipeline.model.scripted import ScriptedBackend
from docvl.pipeline.plan.prompt import Part, TextPart
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.completeness import complete, expected_rows, page_completeness
from docvl.pipeline.tasks.reduce import merge_partials, uncited_pages
from docvl.pipeline.tasks.specs import task_specs
from docvl.schemas import Invoice


def test_completeness_reasks_uncited_pages_per_window_and_merges() -> None:
    settings = Settings(tasks=("extract",), schema_name="invoice")
    [spec] = task_specs(settings)
    data, _ = merge_partials(
        Invoice, [Invoice.model_validate({"line_items": [item("A", 1, 1), item("C", 3, 3)]})]
    )
    assert uncited_pages(data, 1, 5) == [2, 4, 5]
    asked: list[list[int]] = []

    def build(pages: list[int]) -> list[Part]:
        asked.append(pages)
        return [TextPart(f"<page {p}>\n") for p in pages]

    replies = [
        json.dumps({"line_items": [item("B", 2, 2), item("A", 1, 2)]}),
        json.dumps({"line_items": []}),
    ]
    expected = dict.fromkeys(range(1, 6))  # no text layer: only uncited pages look incomplete
    result = complete(
        ScriptedBackend(replies), spec, settings, data, [(1, 3), (4, 5)], build, expected
    )
    assert asked == [[2, 3], [4, 5]]  # each re-asked page with the page after it (if any)
    assert [li["description"] for li in result.data["line_items"]] == ["A", "C", "B"]
    assert result.data["line_items"][0]["page"] == 1
    assert result.reasked_pages == [2, 4, 5] and result.added_records == 1
    assert result.usage.requests == 2 and not result.errors


def test_pages_with_fewer_records_than_table_rows_are_reasked() -> None:
    text = "Invoice 2026-17\nL1 | bolt | 2 | 1.50 | 3.00\nL2 | nut | 4 | 0.25 | 1.00\nTotal 4.00\n"
    assert expected_rows(text) == 2
    settings = Settings(tasks=("extract",), schema_name="invoice")
    [spec] = task_specs(settings)
    data, _ = merge_partials(
        Invoice, [Invoice.model_validate({"line_items": [item("bolt", 3, 1)]})]
    )
    status = page_completeness(Invoice, data, {1: 2, 2: None})
    assert [(s.page, s.records, s.status) for s in status] == [(1, 1, "short"), (2, 0, "uncited")]
    replies = [json.dumps({"line_items": [item("nut", 1, 1)]})]
    asked: list[list[int]] = []

    def build(pages: list[int]) -> list[Part]:
        asked.append(pages)
        return [TextPart(f"<page {p}>\n") for p in pages]

    # One window: a short page is re-asked, an uncited page (a cover, a blank) is not.
    result = complete(
        ScriptedBackend(replies), spec, settings, data, [(1, 2)], build, {1: 2, 2: None}
    )
    assert asked == [[1, 2]] and result.added_records == 1
    assert [s.status for s in page_completeness(Invoice, result.data, {1: 2})] == ["complete"]


def test_a_too_long_completeness_reply_is_asked_page_by_page() -> None:
    settings = Settings(tasks=("extract",), schema_name="invoice")
    [spec] = task_specs(settings)
    replies = [
        ('{"line_items": [', "length"),
        json.dumps({"line_items": [item("a", 1, 1)]}),
        json.dumps({"line_items": [item("b", 1, 2)]}),
    ]
    backend = ScriptedBackend(replies)
    result = complete(
        backend,
        spec,
        settings,
        {"line_items": []},
        [(1, 3)],
        lambda pages: [TextPart(f"<page {p}>\n") for p in pages],
        {1: 1, 2: 1, 3: None},
    )
    assert result.reasked_pages == [1, 2] and result.added_records == 2
    assert result.usage.requests == 3 and not result.errors


def test_a_record_cut_by_a_page_break_is_asked_again_with_the_next_page_and_joined() -> None:
    settings = Settings(tasks=("extract",), schema_name="invoice")
    [spec] = task_specs(settings)
    cut = {**item("Bolt zinc", 0, 1), "quantity": None, "unit_price": None, "amount": None}
    data = {"line_items": [item("Nut", 1, 1), item("Washer", 2, 1), cut, item("Rivet", 3, 2)]}
    whole = item("Bolt zinc plated with spare nuts", 7, 1)
    asked: list[list[int]] = []
    instructions: list[str] = []

    def reply(content: Sequence[Part], request: GenerationRequest) -> str:
        instructions.append(request.instruction)
        # Page 1 shown with page 2; a reader also sees page 2's record, which must not come back.
        return json.dumps({"line_items": [item("Nut", 1, 1), whole, item("Rivet", 3, 2)]})

    def build(pages: list[int]) -> list[Part]:
        asked.append(pages)
        return [TextPart(f"<page {p}>\n") for p in pages]

    backend = ScriptedBackend(reply, token_logprobs=lambda text: [(ch, -0.1) for ch in text])
    result = complete(backend, spec, settings, data, [(1, 1), (2, 2)], build, {1: None, 2: None})
    assert asked == [[1, 2]] and result.reasked_pages == [1]
    assert "begin on page(s) 1. Page(s) 2 are shown only" in instructions[0]
    descriptions = [li["description"] for li in result.data["line_items"]]
    assert descriptions == ["Nut", "Washer", whole["description"], "Rivet"]  # in place, once
    assert result.added_records == 0 and not result.errors
    # The re-ask's reply comes with its confidences, for the page it was asked about.
    [scored] = result.replies
    assert scored.pages is not None and 1 in scored.pages and 2 not in scored.pages
    assert scored.confidence and min(scored.confidence.values()) > 0.89


def test_a_page_whose_last_record_is_whole_is_not_asked_again() -> None:
    settings = Settings(tasks=("extract",), schema_name="invoice")
    [spec] = task_specs(settings)
    data = {"line_items": [item("Nut", 1, 1), item("Washer", 2, 1), item("Rivet", 3, 2)]}
    backend = ScriptedBackend([])
    result = complete(
        backend, spec, settings, data, [(1, 1), (2, 2)], lambda p: [], {1: None, 2: None}
    )
    assert not backend.calls and result.reasked_pages == [] and result.data == data
