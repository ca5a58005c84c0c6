"""The one outgoing HTTP call to a feedback sink: POST JSON, return status and a bounded body.

One httpx.Client per process (made after a fork, never shared across one), so a worker keeps
its connections to a sink alive between posts.
"""

import os
import threading
from dataclasses import dataclass

import httpx

MAX_BODY_CHARS = 100_000  # a sink's answer is a short acknowledgement; more is cut
CONNECT_TIMEOUT_S = 10.0


class TransportError(Exception):
    """No HTTP answer at all: connection refused, reset, timed out."""


@dataclass
class SinkResponse:
    status_code: int
    text: str
    retry_after_s: float | None


_client: httpx.Client | None = None
_client_pid: int | None = None
_client_lock = threading.Lock()


def _shared_client() -> httpx.Client:
    global _client, _client_pid
    with _client_lock:
        if _client is None or _client_pid != os.getpid():
            _client = httpx.Client(follow_redirects=False)
            _client_pid = os.getpid()
        return _client


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare from sinks, and our backoff is a fine fallback


def post_json(url: str, body: dict, *, headers: dict[str, str], timeout_s: float) -> SinkResponse:
    timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
    try:
        response = _shared_client().post(url, json=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise TransportError(f"no answer within {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise TransportError(f"{type(exc).__name__}: {exc}"[:300]) from None
    return SinkResponse(
        status_code=response.status_code,
        text=response.text[:MAX_BODY_CHARS],
        retry_after_s=_retry_after(response.headers.get("retry-after")),
    )
