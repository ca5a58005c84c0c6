"""The one outgoing HTTP call to an agent: POST JSON, read at most a bounded body.

Failures become AgentCallError with a message for people (`message`) and the technical detail
(`detail`: status and a body excerpt), and the HTTP status the request log records.
"""

import json
from dataclasses import dataclass

import httpx
from django.conf import settings

CONNECT_TIMEOUT_S = 10.0
EXCERPT_CHARS = 500


class AgentCallError(Exception):
    def __init__(self, message: str, *, status_code: int, detail: str = "", raw: str = ""):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.detail = detail
        self.raw = raw


@dataclass
class AgentResponse:
    status_code: int
    text: str
    json: object


def excerpt(text: str) -> str:
    return text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")


def post_json(url: str, body: dict, *, headers: dict[str, str], timeout_s: float) -> AgentResponse:
    timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
    limit = settings.AGENT_MAX_REPLY_BYTES
    try:
        with httpx.stream("POST", url, json=body, headers=headers, timeout=timeout) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise AgentCallError(
                        f"The agent's answer is larger than {limit:,} bytes; it was refused.",
                        status_code=502,
                        detail=f"HTTP {response.status_code}, more than {limit} bytes",
                    )
                chunks.append(chunk)
    except httpx.TimeoutException:
        raise AgentCallError(
            f"No answer within {timeout_s:g} s; the endpoint may be scaling up from zero. "
            "Try again in a minute.",
            status_code=504,
            detail=f"timed out after {timeout_s:g} s: {url}",
        ) from None
    except httpx.HTTPError as exc:
        raise AgentCallError(
            "Could not reach the agent's endpoint.",
            status_code=502,
            detail=f"{type(exc).__name__}: {url}",
        ) from None
    text = b"".join(chunks).decode("utf-8", errors="replace")
    if not 200 <= response.status_code < 300:
        raise AgentCallError(
            f"The agent answered with an error (HTTP {response.status_code}).",
            status_code=response.status_code,
            detail=f"HTTP {response.status_code}: {excerpt(text)}",
            raw=text,
        )
    try:
        parsed = json.loads(text)
    except ValueError:
        raise AgentCallError(
            "The agent's answer is not valid JSON.",
            status_code=502,
            detail=f"HTTP {response.status_code}, body: {excerpt(text)}",
            raw=text,
        ) from None
    return AgentResponse(status_code=response.status_code, text=text, json=parsed)
