"""The scripted backend: canned replies, token accounting, recorded calls; and the factory's
scripted path."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from docvl.pipeline.model.base import GenerationRequest, ModelBackend
from docvl.pipeline.model.factory import make_backend
from docvl.pipeline.model.scripted import ScriptedBackend
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.prompt import ImagePart, Part, TextPart, Turn
from docvl.pipeline.settings import Settings

CONTENT: list[Part] = [
    TextPart("<page 1>\n"),
    ImagePart(1, 1, 320, 256),
    TextPart("Text layer:\nhello\n"),
]


def test_replies_in_order_and_recorded() -> None:
    backend = ScriptedBackend(['{"a":1}', ("{", "length")])
    assert isinstance(backend, ModelBackend)
    first, second = backend.generate(CONTENT, [GenerationRequest("one"), GenerationRequest("two")])
    assert (first.text, first.finish_reason) == ('{"a":1}', "stop")
    assert (second.text, second.finish_reason) == ("{", "length")
    assert [r.instruction for r in backend.requests] == ["one", "two"]
    assert backend.calls[0].content == tuple(CONTENT)
    with pytest.raises(AssertionError, match="ran out"):
        backend.generate(CONTENT, [GenerationRequest("three")])


def test_callable_replier_sees_content_and_request() -> None:
    def reply(content: Sequence[Part], request: GenerationRequest) -> str:
        return f'{{"n":{len(content)},"q":"{request.instruction}"}}'

    generation = ScriptedBackend(reply).generate(CONTENT, [GenerationRequest("why")])[0]
    assert generation.text == '{"n":3,"q":"why"}'


def test_token_accounting_estimate() -> None:
    counter = TokenCounter()
    backend = ScriptedBackend(["x" * 30, "y" * 300])
    short, long = backend.generate(
        CONTENT, [GenerationRequest("q"), GenerationRequest("q", max_new_tokens=50)]
    )
    assert short.input_tokens == counter.prompt(CONTENT, "q")
    assert short.output_tokens == counter.text("x" * 30) and short.cached_tokens == 0
    assert long.output_tokens == 50 and long.finish_reason == "length"
    assert long.cached_tokens == counter.content(CONTENT)
    # a re-ask on the same content: the content counts as cached; turns add input tokens
    reask = ScriptedBackend(["{}"]).generate(
        CONTENT, [GenerationRequest("q", turns=(Turn("bad", "fix it"),))]
    )[0]
    assert reask.input_tokens > short.input_tokens


def test_factory_builds_scripted() -> None:
    backend = make_backend(Settings(backend="scripted", model="fake"), replies=["{}"])
    assert isinstance(backend, ScriptedBackend) and backend.model_id == "fake"
    assert backend.generate([], [GenerationRequest("q")])[0].text == "{}"
    default = make_backend(Settings(backend="scripted"))
    assert default.generate([], [GenerationRequest("q")])[0].text == "{}"
    default.close()
