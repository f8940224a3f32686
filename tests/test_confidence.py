"""Per-field confidence from token log-probabilities (pipeline/tasks/confidence.py)."""

from __future__ import annotations

import json
import math

import pytest

from docvl.pipeline.model.base import pieces_from_bytes
from docvl.pipeline.tasks.confidence import (
    GROUNDING_FACTORS,
    combined,
    field_confidence,
    record_confidence,
    token_spans,
    value_at,
    value_spans,
)

REPLY = (
    '{"title": "Q3 \\"final\\"", "lines": [{"amount": 12.5, "ok": true, "page": 2}, '
    '{"amount": -3e2, "note": null, "tags": [], "extra": {}}], "total": {"value": "9", "page": 1}}'
)


def chars(text: str, logprob: float = math.log(0.5)) -> list[tuple[str, float]]:
    """One token per character, every one with ``logprob``."""
    return [(ch, logprob) for ch in text]


def test_scanner_paths_and_spans_on_a_nested_reply() -> None:
    spans = value_spans(REPLY)
    got = {path: REPLY[start:end] for path, start, end in spans}
    assert got == {
        "title": 'Q3 \\"final\\"',  # between the quotes, escapes as written
        "lines[0].amount": "12.5",
        "lines[0].ok": "true",
        "lines[0].page": "2",
        "lines[1].amount": "-3e2",
        "lines[1].note": "null",
        "lines[1].tags": "[]",
        "lines[1].extra": "{}",
        "total.value": "9",
        "total.page": "1",
    }
    assert [p for p, _, _ in spans] == list(got)  # in reply order


def test_scanner_skips_prose_and_fences_and_empty_strings_keep_their_quotes() -> None:
    text = 'Here it is:\n```json\n{"a": "", "b": [1, 2]}\n```'
    got = {path: text[s:e] for path, s, e in value_spans(text)}
    assert got == {"a": '""', "b[0]": "1", "b[1]": "2"}
    assert value_spans("no json here") == [] and value_spans('{"a": tru}') == []


def test_exp_mean_logprob_per_field() -> None:
    # Tokens: '{"a":', ' 1', '2', ',"b":"', 'x', 'y"', '}'
    tokens = [('{"a":', -0.1), (" 1", -1.0), ("2", -2.0), (',"b":"', -0.2), ("x", -0.5)]
    tokens += [('y"', -1.5), ("}", 0.0)]
    text = "".join(t for t, _ in tokens)
    assert json.loads(text) == {"a": 12, "b": "xy"}
    got = field_confidence(text, tokens)
    assert got["a"] == pytest.approx(math.exp(-1.5), abs=1e-4)  # ' 1' and '2' overlap "12"
    assert got["b"] == pytest.approx(math.exp(-1.0), abs=1e-4)  # 'x' and 'y"'
    assert all(0 < v <= 1 for v in got.values())


def test_uniform_logprobs_give_that_probability_everywhere() -> None:
    got = field_confidence(REPLY, chars(REPLY))
    assert len(got) == 10 and set(got.values()) == {0.5}


def test_a_character_split_over_tokens_still_counts() -> None:
    text = '{"name": "café"}'
    raw = text.encode()
    cut = raw.index("é".encode())  # é is two bytes: one token each
    tokens = [(raw[:cut], -0.1), (raw[cut : cut + 1], -3.0), (raw[cut + 1 :], -0.1)]
    pieces = pieces_from_bytes(tokens)
    assert [p for p, _ in pieces] == [text[: text.index("é")], "", text[text.index("é") :]]
    assert token_spans(text, pieces) is not None
    # "café" overlaps all three tokens (the empty one takes the next piece's span)
    assert field_confidence(text, pieces)["name"] == pytest.approx(math.exp(-3.2 / 3), abs=1e-4)


def test_misaligned_or_missing_logprobs_give_nothing() -> None:
    text = '{"a": 1}'
    assert field_confidence(text, ()) == {}
    assert field_confidence(text, chars('{"a": 2}')) == {}  # the pieces spell another text
    assert field_confidence(text, chars('{"a": 1')) == {}  # fewer tokens than the text
    assert field_confidence("not json", chars("not json")) == {}
    assert field_confidence(text, [(text, float("nan"))]) == {}
    # extra tokens around the text (e.g. a stripped end marker) are fine
    assert field_confidence(text, [*chars(text), ("<|im_end|>", -0.1)]) == {"a": 0.5}


def test_record_confidence_is_the_lowest_field() -> None:
    confidence = {"lines[0].amount": 0.9, "lines[0].page": 0.6, "lines[1].amount": 0.3, "t": 1.0}
    assert record_confidence(confidence, "lines[0]") == 0.6
    assert record_confidence(confidence, "lines[1]") == 0.3
    assert record_confidence(confidence, "lines[10]") is None  # not lines[1]'s prefix
    assert record_confidence(confidence, "(root)") == 0.3
    assert record_confidence({}, "lines[0]") is None


def test_grounding_factors_and_paths() -> None:
    assert GROUNDING_FACTORS == {"grounded": 1.0, "page_only": 0.8, "ungrounded": 0.3}
    assert combined(0.9, "grounded") == 0.9 and combined(0.9, "ungrounded") == 0.27
    data = json.loads(REPLY)
    assert value_at(data, "lines[1].amount") == -300.0
    assert value_at(data, "total") == {"value": "9", "page": 1}
    assert value_at(data, "(root)") is data
    assert value_at(data, "lines[5]") is None and value_at(data, "nope.x") is None
