"""The OpenAI-compatible backend against REAL HTTP servers on 127.0.0.1 (no mocked transport).

* docvl's devserver serving the tiny random Qwen3-VL through the transformers backend;
* a small stdlib server replaying scripted statuses (429 with Retry-After, 503, 400, 401) for
  the SDK's retries and their mapping onto docvl's errors, and recording each request body.

Faults (hung servers, resets, invalid replies, a server dying mid-batch): tests/test_faults.py.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from modelkit import Summary, summary_schema, two_pages

from docvl.pipeline.dev.server import ServerHandle, serve
from docvl.pipeline.errors import (
    BackendError,
    BackendRejected,
    BackendUnavailable,
    DocvlError,
    UsageError,
)
from docvl.pipeline.model.base import GenerationRequest
from docvl.pipeline.model.factory import make_backend
from docvl.pipeline.model.http import retry_after_s
from docvl.pipeline.model.openai_backend import OpenAIBackend
from docvl.pipeline.model.transformers_backend import TransformersBackend
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.prompt import Turn
from docvl.pipeline.policy import retried_in_run
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.specs import task_specs

OK_BODY: dict[str, Any] = {
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": '{"a":1}'},
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 11,
        "completion_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 8},
    },
}


# --- devserver + tiny model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def local(tiny_model_dir: Path) -> Iterator[TransformersBackend]:
    backend = TransformersBackend(str(tiny_model_dir))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def server(local: TransformersBackend) -> Iterator[ServerHandle]:
    handle = serve(local)
    yield handle
    handle.stop()


@pytest.fixture()
def remote(server: ServerHandle) -> Iterator[OpenAIBackend]:
    backend = OpenAIBackend(
        Settings(backend="openai", base_url=server.url, model="tiny", max_concurrency=2)
    )
    yield backend
    backend.close()


@pytest.mark.model
def test_models_endpoint(server: ServerHandle, local: TransformersBackend) -> None:
    body = httpx.get(server.url + "/models").json()
    assert body["data"][0]["id"] == local.model_id


@pytest.mark.model
def test_schema_valid_output_and_exact_usage(
    remote: OpenAIBackend, local: TransformersBackend
) -> None:
    content = two_pages()
    request = GenerationRequest(
        "Summarize as JSON.", json_schema=summary_schema(), max_new_tokens=160
    )
    generation = remote.generate(content, [request])[0]
    assert generation.finish_reason == "stop"
    Summary.model_validate_json(generation.text)
    assert remote.structured_output is True
    assert generation.input_tokens == TokenCounter(local.tokenizer).prompt(
        content, request.instruction
    )
    assert 0 < generation.output_tokens <= request.max_new_tokens


@pytest.mark.model
def test_same_prompt_and_output_as_in_process(
    remote: OpenAIBackend, local: TransformersBackend
) -> None:
    """PNG data URLs + the message mapping reproduce the in-process prompt token for token."""
    content = two_pages()
    requests = [
        GenerationRequest("What is the revenue growth?", max_new_tokens=20, temperature=0.0),
        GenerationRequest(
            "Summarize.",
            max_new_tokens=20,
            temperature=0.0,
            turns=(Turn(reply="not json", feedback="Reply with JSON only."),),
        ),
    ]
    over_http = remote.generate(content, requests)
    in_process = local.generate(content, requests)
    for a, b in zip(over_http, in_process, strict=True):
        assert (a.text, a.input_tokens, a.output_tokens, a.finish_reason) == (
            b.text,
            b.input_tokens,
            b.output_tokens,
            b.finish_reason,
        )
    # the devserver keeps the last prefix: the next request on the same pages reports it as cached
    again = remote.generate(
        content, [GenerationRequest("Title?", max_new_tokens=4, temperature=0.0)]
    )[0]
    assert again.cached_tokens > 0.9 * again.input_tokens


@pytest.mark.model
def test_length_finish_reason(remote: OpenAIBackend) -> None:
    generation = remote.generate(
        two_pages(), [GenerationRequest("Tell a story.", max_new_tokens=3)]
    )[0]
    assert (generation.finish_reason, generation.output_tokens) == ("length", 3)


@pytest.mark.model
def test_devserver_rejects_bad_requests(server: ServerHandle) -> None:
    response = httpx.post(server.url + "/chat/completions", json={"messages": []})
    assert response.status_code == 400 and "messages" in response.json()["error"]["message"]


# --- retries against a scripted stdlib server -----------------------------------------------------


class Scripted:
    """A real HTTP server answering with scripted (status, headers, body) and recording each
    request."""

    def __init__(
        self,
        script: list[tuple[int, dict[str, str], dict[str, Any]]],
        reject_response_format: bool = False,
    ) -> None:
        self.script = script
        self.reject_response_format = reject_response_format
        self.requests: list[tuple[float, dict[str, str], dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(
                    (time.monotonic(), {k.lower(): v for k, v in self.headers.items()}, body)
                )
                if outer.reject_response_format and "response_format" in body:
                    status, headers, payload = (
                        400,
                        {},
                        {"error": {"message": "response_format not supported"}},
                    )
                else:
                    status, headers, payload = (
                        outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                    )
                data = json.dumps(payload).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def backend(self, **settings: Any) -> OpenAIBackend:
        return OpenAIBackend(Settings(backend="openai", base_url=self.url, model="m", **settings))

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def scripted_server() -> Iterator[type[Scripted]]:
    servers: list[Scripted] = []

    class Tracked(Scripted):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            servers.append(self)

    yield Tracked
    for s in servers:
        s.stop()


def test_429_honours_retry_after(scripted_server: type[Scripted]) -> None:
    server = scripted_server(
        [(429, {"Retry-After": "1"}, {"error": {"message": "slow down"}}), (200, {}, OK_BODY)]
    )
    backend = server.backend()
    start = time.monotonic()
    generation = backend.generate([], [GenerationRequest("hi")])[0]
    assert time.monotonic() - start >= 1.0
    assert backend.retries == 1
    assert len(server.requests) == 2 and server.requests[1][0] - server.requests[0][0] >= 1.0
    assert (
        generation.text,
        generation.input_tokens,
        generation.output_tokens,
        generation.cached_tokens,
    ) == ('{"a":1}', 11, 3, 8)
    assert generation.timings["retries"] == 1.0


def test_retry_after_as_http_date(scripted_server: type[Scripted]) -> None:
    when = formatdate(time.time() + 2, usegmt=True)
    assert 0.5 <= (retry_after_s(when) or 0) <= 2.0
    server = scripted_server([(503, {"Retry-After": when}, {}), (200, {}, OK_BODY)])
    backend = server.backend()
    backend.generate([], [GenerationRequest("hi")])
    assert backend.retries == 1 and server.requests[1][0] - server.requests[0][0] >= 0.5


def test_503_then_200_backs_off(scripted_server: type[Scripted]) -> None:
    server = scripted_server([(503, {}, {"error": {"message": "overloaded"}}), (200, {}, OK_BODY)])
    backend = server.backend()
    assert backend.generate([], [GenerationRequest("hi")])[0].text == '{"a":1}'
    assert backend.retries == 1 and len(server.requests) == 2


def test_retries_are_bounded(scripted_server: type[Scripted]) -> None:
    server = scripted_server([(503, {}, {"error": {"message": "overloaded"}})])
    backend = server.backend(max_retries=2)
    with pytest.raises(BackendError, match="overloaded") as info:
        backend.generate([], [GenerationRequest("hi")])
    assert info.value.retryable
    assert len(server.requests) == 3


def test_response_format_rejected_falls_back_once(scripted_server: type[Scripted]) -> None:
    server = scripted_server([(200, {}, OK_BODY)], reject_response_format=True)
    backend = server.backend()
    request = GenerationRequest("hi", json_schema={"type": "object", "title": "My Reply"})
    backend.generate([], [request])
    assert [("response_format" in r[2]) for r in server.requests] == [True, False]
    assert backend.structured_output is False
    backend.generate([], [request])
    assert len(server.requests) == 3 and "response_format" not in server.requests[2][2]


def test_response_format_payload(
    scripted_server: type[Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCVL_TEST_KEY", "sk-test")
    server = scripted_server([(200, {}, OK_BODY)])
    backend = server.backend(api_key_env="DOCVL_TEST_KEY")
    backend.generate(
        [],
        [
            GenerationRequest(
                "hi",
                json_schema={"type": "object", "title": "My Reply"},
                temperature=0.7,
                max_new_tokens=7,
            )
        ],
    )
    _, headers, body = server.requests[0]
    assert headers["authorization"] == "Bearer sk-test"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "My_Reply",
            "schema": {
                "type": "object",
                "title": "My Reply",
                "x-guidance": {"whitespace_flexible": False},
            },
            "strict": True,
        },
    }
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (7, 0.7, 0.8)
    assert body["messages"][-1] == {"role": "user", "content": [{"type": "text", "text": "hi"}]}


#: Every field of the OpenAI chat-completions API docvl sends.
OPENAI_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "temperature",
    "top_p",
    "response_format",
    "logprobs",
}


def test_body_holds_only_openai_fields_unless_the_user_allows_more(
    scripted_server: type[Scripted],
) -> None:
    """What api.openai.com or ``transformers serve`` receives by default: no ``top_k`` (they
    answer 400/422 to it) and nothing else outside the API, on first asks and re-asks alike."""
    server = scripted_server([(200, {}, OK_BODY)])
    requests = [
        GenerationRequest("hi", json_schema={"type": "object"}, temperature=0.7),
        GenerationRequest("hi", temperature=0.7, turns=(Turn(reply="x", feedback="JSON!"),)),
        GenerationRequest("hi"),
    ]
    server.backend().generate([], requests)
    assert len(server.requests) == 3
    for _, _, body in server.requests:
        assert set(body) <= OPENAI_FIELDS, set(body) - OPENAI_FIELDS

    # allowed: top_k with sampled requests, and the user's provider fields on every request
    server.requests.clear()
    provider = {"provider": {"require_parameters": True, "order": ["a"]}}
    server.backend(sampling_extras=True, extra_body=json.dumps(provider)).generate([], requests)
    extras = [{k: v for k, v in b.items() if k not in OPENAI_FIELDS} for _, _, b in server.requests]
    assert sorted(extras, key=len) == [provider, provider | {"top_k": 20}, provider | {"top_k": 20}]


def test_extra_body_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCVL_EXTRA_BODY", '{"provider": {"require_parameters": true}}')
    settings = Settings()
    assert settings.extra_body_fields() == {"provider": {"require_parameters": True}}
    assert settings == Settings(extra_body={"provider": {"require_parameters": True}})
    assert hash(settings) == hash(Settings(extra_body='{"provider":{"require_parameters":true}}'))
    with pytest.raises(ValueError, match="JSON object"):
        Settings(extra_body="[1, 2]")
    # what the server is asked changes results: part of the cache fingerprint
    base = Settings(backend="openai", base_url="http://h/v1", extra_body={})
    assert base.fingerprint() != base.model_copy(update={"sampling_extras": True}).fingerprint()


BOUNDS = ("maxItems", "maxLength", "minimum", "maximum", "multipleOf", "minItems")


def bound_pairs(node: Any) -> set[tuple[str, Any]]:
    """Every (bound keyword, value) anywhere in a schema."""
    if isinstance(node, list):
        return {pair for value in node for pair in bound_pairs(value)}
    if not isinstance(node, dict):
        return set()
    own = {(k, node[k]) for k in BOUNDS if k in node and not isinstance(node[k], dict)}
    return own.union(*(bound_pairs(v) for k, v in node.items() if k not in ("enum", "const")))


def test_request_body_carries_the_users_schema_unbounded(
    scripted_server: type[Scripted], tmp_path: Path
) -> None:
    """What a vLLM or OpenRouter server receives with default settings: the user's schema with no
    bound it did not have, no free whitespace, and the configured output budget."""
    user_schema = {
        "type": "object",
        "properties": {
            "vendor": {"type": "string"},
            "rows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string"},
                        "amount": {"type": "number", "minimum": 0},
                    },
                    "required": ["text"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["rows"],
        "additionalProperties": False,
    }
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(user_schema))
    server = scripted_server([(200, {}, OK_BODY)])
    settings = Settings(
        backend="openai",
        base_url=server.url,
        model="m",
        tasks=("extract",),
        schema_name=str(path),
        max_output_tokens=12_345,
    )
    [spec] = task_specs(settings)
    backend = OpenAIBackend(settings)
    backend.generate([], [spec.request(0.0)])
    body = server.requests[-1][2]
    sent = body["response_format"]["json_schema"]["schema"]
    assert body["max_tokens"] == 12_345
    assert sent.pop("x-guidance") == {"whitespace_flexible": False}
    assert sent == user_schema
    assert bound_pairs(sent) == {("minimum", 0)}

    # a built-in: no caps at all; only the page fields carry the window's pages
    [invoice] = task_specs(settings.model_copy(update={"schema_name": "invoice"}))
    backend.generate([], [invoice.request(0.0, pages=[2, 3])])
    body = server.requests[-1][2]
    sent = body["response_format"]["json_schema"]["schema"]
    assert body["max_tokens"] == 12_345
    assert sent["x-guidance"] == {"whitespace_flexible": False}
    assert bound_pairs(sent) == {("minimum", 2), ("maximum", 3)}
    text = json.dumps(sent)
    assert "$ref" not in text and "maxItems" not in text and "maxLength" not in text
    backend.close()


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (401, BackendUnavailable, "invalid api key"),
        (403, BackendUnavailable, "forbidden"),
        (404, BackendUnavailable, "no such model"),
        (400, BackendRejected, "prompt too long"),
        (422, BackendRejected, "top_k: extra fields not permitted"),
    ],
)
def test_client_errors_are_not_retried(
    scripted_server: type[Scripted],
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    error: type[Exception],
    message: str,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = scripted_server([(status, {}, {"error": {"message": message}})])
    with pytest.raises(error, match=f"HTTP {status}: {message}") as info:
        server.backend().generate([], [GenerationRequest("hi")])
    assert isinstance(info.value, DocvlError)
    assert not info.value.retryable and not retried_in_run(info.value.code)
    assert len(server.requests) == 1
    if status == 401:  # says what to set
        assert "$OPENAI_API_KEY is not set" in info.value.message


def test_unreachable_server_is_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    """A wrong --base-url is a setup problem: one attempt, no retry, a clear message."""
    backend = OpenAIBackend(
        Settings(backend="openai", base_url="http://127.0.0.1:9/v1", max_retries=4)
    )
    with (
        caplog.at_level(logging.INFO, logger="openai"),
        pytest.raises(BackendUnavailable, match="cannot reach") as info,
    ):
        backend.generate([], [GenerationRequest("hi")])
    assert not retried_in_run(info.value.code)
    assert not [r for r in caplog.records if "Retrying request" in r.getMessage()]


def test_the_sdk_logs_its_retries(
    scripted_server: type[Scripted], caplog: pytest.LogCaptureFixture
) -> None:
    """The log the test above relies on: the SDK logs each retry it makes."""
    server = scripted_server([(503, {}, {"error": {"message": "overloaded"}}), (200, {}, OK_BODY)])
    with caplog.at_level(logging.INFO, logger="openai"):
        server.backend().generate([], [GenerationRequest("hi")])
    assert len([r for r in caplog.records if "Retrying request" in r.getMessage()]) == 1


def test_refuses_without_base_url() -> None:
    with pytest.raises(UsageError, match="base-url"):
        make_backend(Settings(backend="openai"))
    with pytest.raises(UsageError):
        OpenAIBackend(Settings(backend="openai", base_url=None))


def test_factory_builds_openai(tmp_path: Path) -> None:
    backend = make_backend(Settings(backend="openai", base_url="http://127.0.0.1:9/v1/"))
    assert isinstance(backend, OpenAIBackend)
    assert backend.url == "http://127.0.0.1:9/v1/chat/completions"
    assert isinstance(backend.client, openai.OpenAI)  # the official SDK does the HTTP
    backend.close()


# --- token log-probabilities --------------------------------------------------------------------


def _with_logprobs(tokens: list[tuple[str, float]], with_bytes: bool = True) -> dict[str, Any]:
    body = json.loads(json.dumps(OK_BODY))
    body["choices"][0]["message"]["content"] = "".join(t for t, _ in tokens)
    body["choices"][0]["logprobs"] = {
        "content": [
            {"token": t, "logprob": lp, "top_logprobs": []}
            | ({"bytes": list(t.encode())} if with_bytes else {})
            for t, lp in tokens
        ]
    }
    return body


def test_request_asks_for_logprobs_and_parses_them(scripted_server: type[Scripted]) -> None:
    tokens = [('{"a":', -0.01), ("1", -0.5), ("}", 0.0)]
    server = scripted_server([(200, {}, _with_logprobs(tokens)), (200, {}, OK_BODY)])
    backend = server.backend()
    generation = backend.generate([], [GenerationRequest("hi")])[0]
    assert server.requests[0][2]["logprobs"] is True
    assert generation.text == '{"a":1}' and generation.token_logprobs == tuple(tokens)
    # a server that sends none: no logprobs, nothing else changes
    plain = backend.generate([], [GenerationRequest("hi")])[0]
    assert plain.token_logprobs == () and plain.text == '{"a":1}'
    assert backend.logprobs is None  # not rejected: still asked for


def test_logprob_tokens_without_bytes_use_the_token_text(scripted_server: type[Scripted]) -> None:
    tokens = [('{"a":', -0.01), ("1", -0.5), ("}", 0.0)]
    server = scripted_server([(200, {}, _with_logprobs(tokens, with_bytes=False))])
    generation = server.backend().generate([], [GenerationRequest("hi")])[0]
    assert generation.token_logprobs == tuple(tokens)


def test_logprobs_rejected_falls_back_once(scripted_server: type[Scripted]) -> None:
    server = scripted_server(
        [
            (400, {}, {"error": {"message": "logprobs is not supported by this model"}}),
            (200, {}, OK_BODY),
        ]
    )
    backend = server.backend()
    generation = backend.generate([], [GenerationRequest("hi")])[0]
    assert generation.text == '{"a":1}' and generation.token_logprobs == ()
    assert [("logprobs" in r[2]) for r in server.requests] == [True, False]
    assert backend.logprobs is False
    backend.generate([], [GenerationRequest("hi")])
    assert len(server.requests) == 3 and "logprobs" not in server.requests[2][2]


def test_the_environment_proxy_is_used(
    scripted_server: type[Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY reaches the SDK's client (here the scripted server plays the proxy for a host
    that does not exist), and NO_PROXY bypasses it."""
    proxy = scripted_server([(200, {}, OK_BODY)])
    monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/v1"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    backend = OpenAIBackend(Settings(backend="openai", base_url="http://llm.invalid/v1"))
    assert backend.generate([], [GenerationRequest("hi")])[0].text == '{"a":1}'
    assert proxy.requests[0][1]["host"] == "llm.invalid"
    backend.close()
    monkeypatch.setenv("NO_PROXY", "llm.invalid")
    bypass = OpenAIBackend(Settings(backend="openai", base_url="http://llm.invalid/v1"))
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        bypass.generate([], [GenerationRequest("hi")])
    assert len(proxy.requests) == 1
