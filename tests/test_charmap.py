"""Normalised views that map back to the raw text (pipeline/tasks/charmap.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from docvl.pipeline.tasks.charmap import compact, normalize, normalized


def test_normalisation_helpers() -> None:
    assert normalize("  Ｆｏｏ\u00a0“Bar”\u2014baz ") == 'foo "bar"-baz'
    assert normalize("migra-\n tion") == "migration"
    assert compact("The Quick, brown-fox.") == "thequickbrownfox"


def test_normalised_view_maps_back_to_raw() -> None:
    raw = "  Die Straße der ﬁnalen Migra-\n  tion, Cafe\u0301  "
    view = normalized(raw)
    assert view.text == "die strasse der finalen migration, café"
    at = view.text.index("finalen")
    start, end = view.raw_span(at, at + len("finalen"))
    assert raw[start:end] == "ﬁnalen"
    at = view.text.index("migration")
    start, end = view.raw_span(at, at + len("migration"))
    assert raw[start:end] == "Migra-\n  tion"
    at = view.text.index("café")
    assert raw[slice(*view.raw_span(at, at + 4))] == "Cafe\u0301"
    at = view.text.index("ss")  # half of an expansion maps to the whole source character
    assert raw[slice(*view.raw_span(at, at + 1))] == "ß"


_CHUNKS = ["ab", "C", "ß", "ﬁ", "É", "e\u0301", "-\n", " ", "\n", "\u00ad", "x-", "’", "1,5"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_CHUNKS), max_size=30), st.data())
def test_view_spans_are_monotone_and_renormalise(chunks: list[str], data: st.DataObject) -> None:
    raw = "".join(chunks)
    view = normalized(raw)
    assert view.text == normalize(raw)
    assert len(view.starts) == len(view.ends) == len(view.text)
    for i in range(len(view.text)):
        assert 0 <= view.starts[i] < view.ends[i] <= len(raw)
        if i:
            assert view.starts[i - 1] <= view.starts[i] and view.ends[i - 1] <= view.ends[i]
    if not view.text:
        return
    i = data.draw(st.integers(0, len(view.text) - 1))
    j = data.draw(st.integers(i + 1, len(view.text)))
    piece = view.text[i:j].strip()
    if not piece:
        return
    start, end = view.raw_span(i, j)
    # The raw text behind a piece of the view shows that piece again once normalised.
    assert piece in normalize(raw[start:end])
