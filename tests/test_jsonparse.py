"""Pulling JSON out of replies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docvl.pipeline.tasks.jsonparse import JsonParseError, parse_json


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '  \ufeff{"a": 1}\n',
        '```json\n{"a": 1}\n```',
        '```\n{"a": 1}\n```',
        'Here is the JSON you asked for:\n```json\n{"a": 1}\n```\nHope it helps!',
        'Sure! {"a": 1}',
        '{"a": 1} and some trailing words',
        '{"a": 1}}}}',
        '<think>maybe {"a": 2}?</think>{"a": 1}',
        'The set {x} is empty. Result: {"a": 1}',
    ],
)
def test_extracts_the_object(text: str) -> None:
    assert parse_json(text) == {"a": 1}


def test_arrays_only_when_allowed() -> None:
    assert parse_json("[1, 2]", expect_object=False) == [1, 2]
    with pytest.raises(JsonParseError, match="no JSON object"):
        parse_json("[1, 2]")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("I cannot help with that.", "no JSON object found"),
        ('{"a": 1, "b": [1, 2', "incomplete"),
        ('{"a": 1,, "b": 2} tail', "invalid JSON"),
    ],
)
def test_clear_errors(text: str, fragment: str) -> None:
    with pytest.raises(JsonParseError, match=fragment):
        parse_json(text)


def test_error_names_line_and_column() -> None:
    with pytest.raises(JsonParseError, match=r"line 2, column \d+"):
        parse_json('{"a": 1,\n "b": tru, "c": 3}')


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    st.sampled_from(["", "Answer: ", "```json\n"]),
    st.sampled_from(["", "\n```", " -- done"]),
)
def test_roundtrip_with_wrapping(value: dict[str, object], prefix: str, suffix: str) -> None:
    import json

    assert parse_json(prefix + json.dumps(value) + suffix) == value
