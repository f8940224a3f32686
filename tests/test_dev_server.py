"""``docvl dev serve`` as an OpenAI-compatible server, driven by the official ``openai`` SDK.

The server is real (FastAPI on uvicorn, 127.0.0.1); the model behind it is a
:class:`~docvl.pipeline.model.scripted.ScriptedBackend` (canned replies, recorded calls) since what
is under test is the wire format: streaming, ``n``, ``stop``, any system prompt, ``/health``, the
400s for what is not served, and docvl's own client running through the SDK against it. The tiny
model behind the same server: tests/test_openai_backend.py and tests/test_e2e.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import httpx
import openai
import pytest

from docvl.pipeline.dev.server import ServerHandle, serve
from docvl.pipeline.errors import BackendRejected
from docvl.pipeline.model.base import GenerationRequest
from docvl.pipeline.model.openai_backend import OpenAIBackend
from docvl.pipeline.model.scripted import ScriptedBackend
from docvl.pipeline.plan.prompt import Part, TextPart
from docvl.pipeline.settings import Settings

REPLY = '{"title":"Quarterly report","pages":[1,2]}'


def _pieces(text: str) -> list[tuple[str, float]]:
    return [(text[i : i + 5], -0.1) for i in range(0, len(text), 5)]


@pytest.fixture(scope="module")
def backend() -> ScriptedBackend:
    def reply(content: Sequence[Part], request: GenerationRequest) -> str:
        return REPLY

    return ScriptedBackend(reply, model_id="scripted-vl", token_logprobs=_pieces)


@pytest.fixture(scope="module")
def server(backend: ScriptedBackend) -> Iterator[ServerHandle]:
    handle = serve(backend)
    yield handle
    handle.stop()


@pytest.fixture()
def client(server: ServerHandle) -> Iterator[openai.OpenAI]:
    sdk = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    yield sdk
    sdk.close()


USER = [{"role": "user", "content": "Summarize."}]


def test_health_and_models(server: ServerHandle, client: openai.OpenAI) -> None:
    root = server.url.removesuffix("/v1")
    assert httpx.get(root + "/health").json() == {"status": "ok", "model": "scripted-vl"}
    assert [m.id for m in client.models.list()] == ["scripted-vl"]


def test_sdk_gets_streamed_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="scripted-vl",
        messages=USER,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert sum(1 for d in deltas if d) > 3  # in pieces, not one blob
    assert "".join(deltas) == REPLY
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_any_system_prompt_reaches_the_model(
    client: openai.OpenAI, backend: ScriptedBackend
) -> None:
    reply = client.chat.completions.create(
        model="scripted-vl",
        messages=[{"role": "system", "content": "You are terse."}, *USER],  # type: ignore[list-item]
    )
    assert reply.choices[0].message.content == REPLY
    call = backend.calls[-1]
    assert call.content[0] == TextPart("You are terse.")
    assert call.request.instruction == "Summarize."


def test_n_and_stop(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="scripted-vl",
        messages=USER,  # type: ignore[arg-type]
        n=3,
        stop=['","pages'],
    )
    assert [c.index for c in reply.choices] == [0, 1, 2]
    for choice in reply.choices:
        assert choice.message.content == '{"title":"Quarterly report'
        assert choice.finish_reason == "stop"
    streamed = client.chat.completions.create(
        model="scripted-vl",
        messages=USER,  # type: ignore[arg-type]
        n=2,
        stop="Quarterly",
        stream=True,
    )
    texts = ["", ""]
    for chunk in streamed:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == ['{"title":"'] * 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools is not supported"),
        ({"n": 99}, "n must be an integer"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop must be"),
    ],
)
def test_what_is_not_served_is_a_clear_400(
    client: openai.OpenAI, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(openai.BadRequestError, match=message):
        client.chat.completions.create(
            model="scripted-vl",
            messages=USER,  # type: ignore[arg-type]
            extra_body=fields,
        )


def test_unknown_fields_are_refused_like_api_openai_com(
    client: openai.OpenAI, server: ServerHandle
) -> None:
    with pytest.raises(openai.BadRequestError, match=r"Unrecognized request argument.*top_k"):
        client.chat.completions.create(
            model="scripted-vl",
            messages=USER,  # type: ignore[arg-type]
            extra_body={"top_k": 20},
        )
    bad = httpx.post(server.url + "/chat/completions", content=b"{not json")
    assert bad.status_code == 400 and "invalid JSON" in bad.json()["error"]["message"]
    empty = httpx.post(server.url + "/chat/completions", json={"messages": []})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "messages"


def test_docvl_runs_through_the_sdk_against_dev_serve(
    server: ServerHandle, backend: ScriptedBackend
) -> None:
    """docvl's OpenAI backend, with the defaults, sends only what an OpenAI server accepts; the
    user's extras are sent only when allowed, and then refused by a server that does not know
    them (as api.openai.com and ``transformers serve`` do) with the server's message."""
    settings = Settings(backend="openai", base_url=server.url, model="scripted-vl")
    content = [TextPart("<page 1>\nRevenue grew 12%.")]
    requests = [
        GenerationRequest("Summarize.", json_schema={"type": "object"}, temperature=0.7),
        GenerationRequest("Title?", max_new_tokens=64),
    ]
    docvl = OpenAIBackend(settings)
    try:
        generations = docvl.generate(content, requests)
    finally:
        docvl.close()
    assert [g.text for g in generations] == [REPLY, REPLY]
    assert generations[0].token_logprobs == tuple(_pieces(REPLY))
    assert generations[0].input_tokens > 0 and docvl.structured_output is True
    assert backend.calls[-1].content == tuple(content)

    allowed = OpenAIBackend(settings.model_copy(update={"sampling_extras": True}))
    try:
        with pytest.raises(BackendRejected, match=r"HTTP 400: Unrecognized.*top_k"):
            allowed.generate(content, requests[:1])
    finally:
        allowed.close()
