"""Delivery into an outbox: the ledger (done markers and claims), per-document JSON files, run
manifests, and webhook POSTs with retries (tenacity, the project's one retry library).

Layout of an outbox::

    outbox/<input stem>.<sha256[:12]>.json     one result per input document (atomic: temp + rename)
    outbox/manifests/<flow run id>.jsonl       one line per document a run picked up (atomic)
    outbox/.docvl-ledger/<key>.done            the ledger: a delivered document
                                               (key = sha256-fingerprint)
    outbox/.docvl-ledger/<key>.claim           a run is processing that document right now
    outbox/.docvl-ledger/stat-cache.json       (size, mtime) -> sha256, so unchanged inputs are not
                                               rehashed

Claims make overlapping runs safe: a claim is created with O_CREAT|O_EXCL, so exactly one run gets
it. A claim whose process is gone (same host, pid not alive) or older than ``ttl_s`` is stale; it is
taken over by renaming it away first (only one renamer wins), so a run killed mid-document is picked
up again later.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tenacity import (
    Future,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from docvl.flows.store import atomic_write_json, atomic_write_jsonl, safe_stem
from docvl.pipeline.model.http import retry_after_s

LEDGER_DIR = ".docvl-ledger"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Ledger:
    def __init__(self, outbox: Path, ttl_s: float = 6 * 3600) -> None:
        self.root = outbox / LEDGER_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl_s = ttl_s

    def done(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.root / f"{key}.done").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def mark_done(self, key: str, entry: dict[str, Any]) -> None:
        atomic_write_json(self.root / f"{key}.done", entry)

    def _stale(self, claim: Path) -> bool:
        try:
            info = json.loads(claim.read_text())
            age = time.time() - float(info["time"])
        except (OSError, ValueError, KeyError, TypeError):
            # Unreadable: a claimer died between create and write, or is writing right now.
            with contextlib.suppress(OSError):
                return time.time() - claim.stat().st_mtime > 60
            return False
        if age > self.ttl_s:
            return True
        return info.get("host") == socket.gethostname() and not _alive(int(info.get("pid", 0)))

    def claim(self, key: str, run_id: str) -> bool:
        """True when this process now owns ``key`` (and it is not done)."""
        path = self.root / f"{key}.claim"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(path):
                    return False
                try:  # take over: only one process can rename the stale claim away
                    os.rename(
                        path,
                        path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.stale"),
                    )
                except FileNotFoundError:
                    return False
                for stale in self.root.glob(f".{path.name}.*.stale"):
                    stale.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(
                    {
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "run": run_id,
                        "time": time.time(),
                    },
                    fh,
                )
                fh.flush()
                os.fsync(fh.fileno())
            if (
                self.done(key) is not None
            ):  # finished by another run between our check and the claim
                path.unlink(missing_ok=True)
                return False
            return True
        return False

    def release(self, key: str) -> None:
        (self.root / f"{key}.claim").unlink(missing_ok=True)

    # --- stat cache -----------------------------------------------------------------------------
    def load_stat_cache(self) -> dict[str, list[Any]]:
        try:
            data = json.loads((self.root / "stat-cache.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def save_stat_cache(self, cache: dict[str, list[Any]]) -> None:
        atomic_write_json(self.root / "stat-cache.json", cache)


def output_name(input_path: Path, sha256: str) -> str:
    return f"{safe_stem(input_path.name)}.{sha256[:12]}.json"


def deliver(outbox: Path, input_path: Path, sha256: str, record: dict[str, Any]) -> Path:
    target = outbox / output_name(input_path, sha256)
    atomic_write_json(target, record)
    return target


def write_manifest(outbox: Path, run_id: str, rows: list[dict[str, Any]]) -> Path:
    target = outbox / "manifests" / f"{run_id}.jsonl"
    atomic_write_jsonl(target, rows)
    return target


@dataclass
class WebhookResult:
    ok: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None


#: A Retry-After longer than this is capped (a webhook should not stall deliveries for hours).
MAX_RETRY_AFTER_S = 300.0


def _retry_answer(response: httpx.Response) -> bool:
    return response.status_code in (408, 429) or response.status_code >= 500


def _wait(backoff_s: float) -> Callable[[RetryCallState], float]:
    """Exponential backoff (``backoff_s``, doubled each time), unless the answer says how long
    (Retry-After, capped at :data:`MAX_RETRY_AFTER_S`)."""
    backoff = wait_exponential(multiplier=backoff_s, exp_base=2)

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            after = retry_after_s(outcome.result().headers.get("Retry-After"))
            if after is not None:
                return min(after, MAX_RETRY_AFTER_S)
        return float(backoff(state))

    return wait


def post_record(
    url: str,
    record: dict[str, Any],
    *,
    attempts: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 30.0,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> WebhookResult:
    """POST one record as JSON, retried by tenacity: transport errors, 408, 429 and 5xx with
    exponential backoff, honouring Retry-After; other 4xx fail at once."""
    own = client is None
    http = client or httpx.Client(timeout=timeout_s)
    sent = 0

    def send() -> httpx.Response:
        nonlocal sent
        sent += 1
        return http.post(url, json=record)

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=_wait(backoff_s),
        retry=retry_if_exception_type(httpx.HTTPError) | retry_if_result(_retry_answer),
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome,  # the last answer or error, kept
    )
    try:
        outcome: httpx.Response | Future = retrying(send)
    finally:
        if own:
            http.close()
    if isinstance(outcome, Future) and outcome.failed:
        exc = outcome.exception()
        return WebhookResult(ok=False, attempts=sent, error=f"{type(exc).__name__}: {exc}")
    response: httpx.Response = outcome.result() if isinstance(outcome, Future) else outcome
    return WebhookResult(
        ok=response.is_success,
        attempts=sent,
        status_code=response.status_code,
        error=None if response.is_success else response.text[:200],
    )
