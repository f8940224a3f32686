"""Per-record confidence in the merged extraction (pipeline/engine/confidence.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from test_analyze import SETTINGS, make_pdf

from docvl.pipeline.engine import Engine
from docvl.pipeline.engine.confidence import add_confidence, identities, record_confidences
from docvl.pipeline.model.scripted import ScriptedBackend
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.result import Grounding, GroundingItem
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.confidence import ScoredReply


def row(description: str, page: int) -> dict[str, Any]:
    return {"description": description, "amount": 1.0, "page": page, "quote": None}


def test_the_first_reply_holding_a_record_gives_its_confidence() -> None:
    window = ScoredReply(
        {"lines": [row("a", 1), row("b", 2)]},
        {"lines[0].description": 0.9, "lines[0].amount": 0.8, "lines[1].description": 0.7},
        range(1, 2),  # page 2 belongs to the next window
    )
    reask = ScoredReply(
        {"lines": [row("b", 2), row("a", 1)]}, {"lines[0].amount": 0.6, "lines[1].amount": 0.1}, {2}
    )
    known = record_confidences([window, reask], ["lines"])
    assert known[identities("lines[0]", row("a", 1))[0]] == 0.8  # the window's, its lowest field
    assert known[identities("lines[5]", row("b", 2))[0]] == 0.6  # the re-ask's, not the window's
    assert record_confidences([ScoredReply({"lines": [row("a", 1)]})], ["lines"]) == {}
    grounding = Grounding(
        items=[
            GroundingItem(path="lines[0]", status="grounded"),
            GroundingItem(path="lines[1]", status="ungrounded"),
            GroundingItem(path="lines[2]", status="grounded"),
        ]
    )
    add_confidence(grounding, {"lines": [row("a", 1), row("b", 2), row("c", 3)]}, known)
    a, b, c = grounding.items
    assert (a.model_confidence, a.confidence) == (0.8, 0.8)
    assert b.model_confidence == 0.6 and b.confidence == pytest.approx(0.18)
    assert (c.model_confidence, c.confidence) == (None, None)


def test_grounding_items_get_confidence_from_token_logprobs(tmp_path: Path) -> None:
    """Every token at probability 0.9: every record's model confidence is 0.9, and its confidence
    is weighed by its grounding (a quote not on its page scores lower)."""

    def answer(content: Any, request: Any) -> str:
        items = [
            {"key": "Item number 1", "value": "10.00 EUR", "page": 1, "quote": "costs 10.00 EUR"},
            {"key": "Item number 2", "value": "20.00 EUR", "page": 2, "quote": "nowhere to see"},
        ]
        return json.dumps({"form_title": None, "fields": items})

    def logprobs(text: str) -> list[tuple[str, float]]:
        return [(ch, math.log(0.9)) for ch in text]

    settings = Settings(**{**SETTINGS, "tasks": ("extract",)})
    pdf = make_pdf(tmp_path / "a.pdf", 2)
    backend = ScriptedBackend(answer, token_logprobs=logprobs)
    [env] = Engine(settings, backend, TokenCounter()).analyze([pdf])
    assert env.extraction is not None, env.errors
    items = {i.path: i for i in env.extraction.grounding.items}
    good, bad = items["fields[0]"], items["fields[1]"]
    assert (good.status, bad.status) == ("grounded", "ungrounded")
    assert good.model_confidence == bad.model_confidence == pytest.approx(0.9)
    assert good.confidence == pytest.approx(0.9) and bad.confidence == pytest.approx(0.27)
    assert bad.confidence < good.confidence
    # without log-probabilities, no confidence at all
    [plain] = Engine(settings, ScriptedBackend(answer), TokenCounter()).analyze([pdf])
    assert plain.extraction is not None
    assert all(
        i.confidence is None and i.model_confidence is None
        for i in plain.extraction.grounding.items
    )
