"""HTTP plumbing under the ``openai`` SDK and the webhook delivery of ``flows``.

* :func:`retry_after_s`: seconds from a Retry-After header (the webhook's tenacity wait reads it;
  the SDK reads its own).
* :class:`DeadlineTransport`: one wall-time bound for one SDK request, its retries included. The
  SDK retries timeouts, 408/409/429/5xx and broken connections with backoff, each attempt with the
  full per-attempt timeout; this transport, under the SDK's ``httpx2.Client``, cuts every attempt to
  the time left before the request's deadline (carried by the :data:`DEADLINE_HEADER` that
  :func:`deadline_headers` sets and the transport removes before sending), tells the SDK not to
  retry an error answer once too little time is left (``x-should-retry: false``, a header the SDK
  obeys), and refuses to start an attempt after the deadline with :class:`DeadlineExceeded`
  (an ``OpenAIError``: the SDK raises it as is, without retrying). A host that refuses the
  connection or does not resolve is :class:`Unreachable` at once: a wrong ``--base-url`` is a
  setup problem, never retried.
"""

from __future__ import annotations

import email.utils
import time
import urllib.parse
import urllib.request

import httpx2
import openai

#: Carries a request's deadline (``time.monotonic()`` seconds) from the backend to the transport.
DEADLINE_HEADER = "x-docvl-deadline"
#: The SDK's backoff after its n-th retry: ``min(INITIAL * 2**n, MAX)`` seconds, less up to 25%
#: jitter (``openai._constants``). An error answer is not retried when the wait would pass the
#: deadline.
INITIAL_BACKOFF_S, MAX_BACKOFF_S = 0.5, 8.0


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``): an httpx client given its own transport no longer reads them."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


class DeadlineExceeded(openai.OpenAIError):
    """No attempt of a request may start: its deadline has passed."""


class Unreachable(openai.APIConnectionError):
    """The host refused the connection or does not resolve: a configuration problem, raised past
    the SDK's retries (it re-raises an ``OpenAIError`` as is)."""


def deadline_headers(seconds: float) -> dict[str, str]:
    """Extra headers for one SDK call: its deadline, ``seconds`` from now, for every attempt."""
    return {DEADLINE_HEADER: repr(time.monotonic() + seconds)}


class DeadlineTransport(httpx2.BaseTransport):
    """Wraps a transport: enforces the deadline of requests that carry :data:`DEADLINE_HEADER`,
    and raises :class:`Unreachable` for a connection that cannot be made."""

    def __init__(self, inner: httpx2.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        value = request.headers.pop(DEADLINE_HEADER, None)
        deadline = float(value) if value is not None else None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded("the request's deadline passed before this attempt")
            timeouts = request.extensions.get("timeout") or {}
            request.extensions["timeout"] = {
                name: left if timeouts.get(name) is None else min(float(timeouts[name]), left)
                for name in ("connect", "read", "write", "pool")
            }
        try:
            response = self.inner.handle_request(request)
        except httpx2.ConnectError as exc:  # refused, no route, unknown host: not retried
            raise Unreachable(message=f"cannot connect: {exc}", request=request) from exc
        if deadline is None:
            return response
        if response.status_code >= 400 and "x-should-retry" not in response.headers:
            wait = retry_after_s(response.headers.get("retry-after"))
            if wait is None:  # the SDK's next backoff, before its jitter (which only shortens it)
                retries = int(request.headers.get("x-stainless-retry-count") or 0)
                wait = min(INITIAL_BACKOFF_S * 2.0**retries, MAX_BACKOFF_S)
            if time.monotonic() + wait >= deadline:
                response.headers["x-should-retry"] = "false"
        return response

    def close(self) -> None:
        self.inner.close()
