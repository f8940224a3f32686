"""Map -> reduce: deterministic merge, model-based reduce (the check: test_completeness.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mergekit import item

from docvl.pipeline.model.base import GenerationRequest
from docvl.pipeline.model.scripted import ScriptedBackend
from docvl.pipeline.plan.prompt import ImagePart, Part, TextPart
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks import reduce as reduce_mod
from docvl.pipeline.tasks.reduce import merge_partials, reduce_with_model
from docvl.pipeline.tasks.specs import task_specs
from docvl.schemas import DocumentSummary, FormData, Invoice


def test_invoice_merge_dedups_across_windows_and_notes_conflicts() -> None:
    w1 = Invoice.model_validate(
        {
            "invoice_number": {"value": "INV-1", "page": 1},
            "total": {"value": None},
            "line_items": [
                item("Widget A", 10.0, 1),
                item("Coffee", 3.5, 1),
                item("Coffee", 3.5, 1),
            ],
        }
    )
    w2 = Invoice.model_validate(
        {
            "invoice_number": {"value": "INV-1", "page": 3},
            "total": {"value": 120.0, "page": 3},
            "currency": {"value": "EUR", "page": 3},
            "line_items": [
                item("widget  a.", 10.0, 2, quote="Widget A 10.00"),
                item("Coffee", 3.5, 3),
                item("Gadget", 99.0, 3),
            ],
        }
    )
    w3 = Invoice.model_validate(
        {"total": {"value": 121.0, "page": 4}, "invoice_number": {"value": "inv-1"}}
    )
    data, conflicts = merge_partials(Invoice, [w1, w2, w3])
    descs = [(li["description"], li["page"]) for li in data["line_items"]]
    # Two coffees within window 1 stay two; the third (window 2) merges; "widget  a." merges into
    # "Widget A".
    assert descs == [("Widget A", 1), ("Coffee", 1), ("Coffee", 1), ("Gadget", 3)]
    assert data["line_items"][0]["quote"] == "Widget A 10.00"
    assert data["invoice_number"]["value"] == "INV-1" and data["invoice_number"]["page"] == 1
    assert data["total"] == {"value": 120.0, "page": 3, "quote": None}
    assert data["currency"]["value"] == "EUR"
    [conflict] = conflicts
    assert conflict.path == "total" and conflict.values == [120.0, 121.0] and conflict.kept == 120.0


def test_form_fields_merge_by_key_and_key_points_by_text() -> None:
    a = FormData.model_validate({"fields": [{"key": "Name", "value": "Ada", "page": 1}]})
    b = FormData.model_validate(
        {
            "fields": [
                {"key": "name:", "value": None, "page": 2},
                {"key": "Date", "value": "2024-01-01", "page": 2},
            ]
        }
    )
    data, _ = merge_partials(FormData, [a, b])
    assert [(f["key"], f["value"]) for f in data["fields"]] == [
        ("Name", "Ada"),
        ("Date", "2024-01-01"),
    ]
    s1 = DocumentSummary.model_validate(
        {"summary": "x", "key_points": [{"point": "Revenue grew.", "pages": [1]}]}
    )
    s2 = DocumentSummary.model_validate(
        {
            "summary": "y",
            "key_points": [
                {"point": "revenue grew", "pages": [7]},
                {"point": "Costs fell", "pages": [8]},
            ],
        }
    )
    merged, conflicts = merge_partials(DocumentSummary, [s1, s2])
    assert merged["key_points"] == [
        {"point": "Revenue grew.", "pages": [1, 7]},
        {"point": "Costs fell", "pages": [8]},
    ]
    assert [c.path for c in conflicts] == ["summary"]


def test_model_based_summary_reduce_is_text_only() -> None:
    settings = Settings()
    [spec] = task_specs(settings)
    final = {
        "title": "Whole",
        "summary": "All parts.",
        "key_points": [{"point": "p", "pages": [1, 50]}],
    }
    backend = ScriptedBackend([json.dumps(final)])
    partials = [
        (f"pages {a}-{b}", DocumentSummary(summary=f"part {a}")) for a, b in ((1, 40), (41, 80))
    ]
    outcome = reduce_with_model(backend, spec, partials, settings)
    assert outcome.data == DocumentSummary.model_validate(final).model_dump(mode="json")
    [call] = backend.calls
    assert not any(isinstance(p, ImagePart) for p in call.content)
    texts = [p.text for p in call.content if isinstance(p, TextPart)]
    assert texts[0].startswith("<partial 1: pages 1-40>\n") and '"part 41"' in texts[1]
    assert "partial summaries" in call.request.instruction
    assert (
        outcome.usage.requests == 1 and outcome.usage.input_tokens == call.generation.input_tokens
    )


def test_reduce_goes_hierarchical_above_the_fan_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reduce_mod, "REDUCE_FANIN", 2)
    settings = Settings()
    [spec] = task_specs(settings)
    labels: list[list[str]] = []

    def reply(content: Sequence[Part], request: GenerationRequest) -> str:
        labels.append([p.text.split("\n")[0] for p in content if isinstance(p, TextPart)])
        return json.dumps({"summary": "merged"})

    partials = [(f"pages {i}-{i}", DocumentSummary(summary=str(i))) for i in range(1, 6)]
    outcome = reduce_with_model(ScriptedBackend(reply), spec, partials, settings)
    assert outcome.data is not None and outcome.usage.requests == len(labels) == 4
    assert labels == [
        ["<partial 1: pages 1-1>", "<partial 2: pages 2-2>"],
        ["<partial 1: pages 3-3>", "<partial 2: pages 4-4>"],
        ["<partial 1: pages 1-2>", "<partial 2: pages 3-4>"],
        ["<partial 1: pages 1-4>", "<partial 2: pages 5-5>"],
    ]


def test_reduce_failure_is_an_outcome_error() -> None:
    settings = Settings(max_attempts=2)
    [spec] = task_specs(settings)
    partials = [
        ("pages 1-1", DocumentSummary(summary="a")),
        ("pages 2-2", DocumentSummary(summary="b")),
    ]
    outcome = reduce_with_model(ScriptedBackend(["bad", "bad"]), spec, partials, settings)
    assert outcome.data is None and outcome.error is not None and outcome.usage.requests == 2


form_fields = st.lists(
    st.fixed_dictionaries(
        {
            "key": st.sampled_from(["Name", "name", "Date", "Total", "Sig"]),
            "value": st.none() | st.sampled_from(["a", "b"]),
            "page": st.integers(1, 5),
        }
    ),
    max_size=6,
)


@given(form_fields, form_fields)
def test_merge_properties(a: list[dict[str, object]], b: list[dict[str, object]]) -> None:
    fa = FormData.model_validate({"fields": a})
    fb = FormData.model_validate({"fields": b})
    alone, _ = merge_partials(FormData, [fa])
    assert alone == fa.model_dump(mode="json")  # one window: unchanged
    twice, _ = merge_partials(FormData, [fa, fa])
    assert twice == alone  # a window repeated adds nothing
    both, _ = merge_partials(FormData, [fa, fb])
    keys_a = [str(f["key"]).casefold() for f in a]
    keys_b = [str(f["key"]).casefold() for f in b]
    expected = len(keys_a) + sum(max(0, keys_b.count(k) - keys_a.count(k)) for k in set(keys_b))
    assert len(both["fields"]) == expected
