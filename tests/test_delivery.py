"""Outbox pieces without Prefect: ledger claims, atomic files, manifests, webhook retries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from docvl.flows.delivery import (
    MAX_RETRY_AFTER_S,
    Ledger,
    deliver,
    output_name,
    post_record,
    write_manifest,
)
from docvl.flows.store import atomic_write_jsonl


def test_claim_is_exclusive_and_done_wins(tmp_path: Path) -> None:
    a, b = Ledger(tmp_path), Ledger(tmp_path)
    assert a.claim("k1", "run-a")
    assert not b.claim("k1", "run-b")
    a.mark_done("k1", {"output": "x.json"})
    a.release("k1")
    assert not b.claim("k1", "run-b")  # done: nobody claims it again
    assert b.done("k1") == {"output": "x.json"}


def test_claim_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(proc.stdout)
    (ledger.root / "k.claim").write_text(
        json.dumps(
            {"pid": dead_pid, "host": os.uname().nodename, "run": "old", "time": time.time()}
        )
    )
    assert ledger.claim("k", "new")
    assert json.loads((ledger.root / "k.claim").read_text())["run"] == "new"
    assert not list(ledger.root.glob("*.stale"))


def test_live_claim_is_respected_until_ttl(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, ttl_s=3600)
    (ledger.root / "k.claim").write_text(
        json.dumps(
            {"pid": os.getpid(), "host": os.uname().nodename, "run": "other", "time": time.time()}
        )
    )
    assert not ledger.claim("k", "me")
    assert Ledger(tmp_path, ttl_s=0).claim("k", "me")


def test_deliver_and_manifest_are_atomic(tmp_path: Path) -> None:
    target = deliver(tmp_path, Path("/in/report.final.pdf"), "ab" * 32, {"status": "ok"})
    assert (
        target.name
        == output_name(Path("report.final.pdf"), "ab" * 32)
        == "report.final.abababababab.json"
    )
    assert json.loads(target.read_text()) == {"status": "ok"}
    manifest = write_manifest(tmp_path, "run-1", [{"a": 1}, {"b": 2}])
    assert [json.loads(x) for x in manifest.read_text().splitlines()] == [{"a": 1}, {"b": 2}]
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []  # no temp files left


def test_atomic_jsonl_failure_keeps_old_file(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    atomic_write_jsonl(out, [{"a": 1}])

    def rows():  # type: ignore[no-untyped-def]
        yield {"b": 2}
        raise RuntimeError("killed while building")

    with pytest.raises(RuntimeError):
        atomic_write_jsonl(out, rows())
    assert out.read_text() == '{"a":1}\n'


def _client(responses: list[httpx.Response | Exception], seen: list[httpx.Request]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_webhook_honours_retry_after_and_backs_off() -> None:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    client = _client(
        [
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(503),
            httpx.ConnectError("refused"),
            httpx.Response(201),
        ],
        seen,
    )
    result = post_record(
        "http://hook/x", {"id": 1}, client=client, backoff_s=0.5, sleep=sleeps.append
    )
    assert result.ok and result.attempts == 4 and result.status_code == 201
    assert sleeps == [7.0, 1.0, 2.0]
    assert json.loads(seen[0].content) == {"id": 1}


def test_webhook_does_not_retry_client_errors() -> None:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    result = post_record(
        "http://hook/x",
        {},
        client=_client([httpx.Response(400, text="bad")], seen),
        sleep=sleeps.append,
    )
    assert not result.ok and result.attempts == 1 and result.status_code == 400 and sleeps == []


def test_webhook_gives_up_after_attempts() -> None:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    result = post_record(
        "http://hook/x",
        {},
        attempts=3,
        backoff_s=1,
        client=_client([httpx.Response(500)] * 3, seen),
        sleep=sleeps.append,
    )
    assert not result.ok and result.attempts == 3 and sleeps == [1, 2]


def test_webhook_honours_and_caps_retry_after() -> None:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    replies = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(503, headers={"Retry-After": "99999"}),
        httpx.Response(429, headers={"Retry-After": "soon"}),
        httpx.Response(200),
    ]
    result = post_record(
        "http://hook/x",
        {},
        attempts=4,
        backoff_s=1,
        client=_client(replies, seen),
        sleep=sleeps.append,
    )
    assert result.ok and result.attempts == 4
    assert sleeps == [
        7.0,
        MAX_RETRY_AFTER_S,
        4,
    ]  # header, capped header, unreadable header: backoff


def test_webhook_unreachable_ends_with_the_last_error() -> None:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    result = post_record(
        "http://hook/x",
        {},
        attempts=2,
        backoff_s=1,
        client=_client([httpx.ConnectError("refused")] * 2, seen),
        sleep=sleeps.append,
    )
    assert not result.ok and result.attempts == 2 and len(seen) == 2 and sleeps == [1]
    assert result.status_code is None and result.error == "ConnectError: refused"
