"""Small helpers shared by the demo agent's tests."""

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.demo_agent import DemoAgent


def chat_body(question: str = "How does MLflow tracing show retrieved documents?", **extra: Any):
    return {"messages": [{"role": "user", "content": question}], **extra}


def invoke(
    agent: DemoAgent,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    endpoint: str = "demo-endpoint",
    timeout: float = 30,
) -> httpx.Response:
    """POST a chat turn (default: one question) to the agent's invocations route."""
    return httpx.post(
        agent.invocations_url(endpoint),
        json=chat_body() if body is None else body,
        headers={**agent.auth_headers(), **(headers or {})},
        timeout=timeout,
    )


def answer_text(response: httpx.Response) -> str:
    return response.json()["choices"][0]["message"]["content"]


def post_feedback(
    agent: DemoAgent,
    records: list[dict[str, Any]],
    *,
    idempotency_key: str | None = None,
    endpoint: str = "demo-endpoint",
) -> httpx.Response:
    headers = agent.auth_headers()
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return httpx.post(
        agent.feedback_url(endpoint),
        json={"dataframe_records": records},
        headers=headers,
        timeout=30,
    )


# A question whose answer has a dozen words or more, in every style.
QUESTION = "How is feedback posted?"


def turn_body(schema: str, question: str = QUESTION, **extra: Any) -> dict[str, Any]:
    """The smallest valid turn in `schema`'s request shape (protocol.md §1.2-1.5)."""
    if schema == "responses":
        return {"input": [{"type": "message", "role": "user", "content": question}], **extra}
    if schema == "legacy":
        return {"query": question, "history": [], **extra}
    return {"messages": [{"role": "user", "content": question}], **extra}


@dataclass
class StreamedTurn:
    """What a client got from a streamed turn: the data events in order, whether `[DONE]`
    arrived, and the transport error that ended it early, if one did."""

    status_code: int
    headers: httpx.Headers
    events: list[dict[str, Any]] = field(default_factory=list)
    arrival_s: list[float] = field(default_factory=list)  # seconds from sending, per event
    done: bool = False
    error: httpx.TransportError | None = None
    body: bytes = b""  # when the answer was not an event stream


def stream_turn(
    agent: DemoAgent,
    body: dict[str, Any],
    *,
    endpoint: str,
    timeout: float = 30,
) -> StreamedTurn:
    started = time.monotonic()
    with httpx.stream(
        "POST",
        agent.invocations_url(endpoint),
        json={**body, "stream": True},
        headers=agent.auth_headers(),
        timeout=timeout,
    ) as response:
        turn = StreamedTurn(response.status_code, response.headers)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            turn.body = response.read()
            return turn
        try:
            for line in response.iter_lines():
                if not line:
                    continue
                assert line.startswith("data: "), line
                assert not turn.done, f"an event after [DONE]: {line}"
                payload = line.removeprefix("data: ")
                if payload == "[DONE]":
                    turn.done = True
                    continue
                turn.events.append(json.loads(payload))
                turn.arrival_s.append(time.monotonic() - started)
        except httpx.TransportError as exc:
            turn.error = exc
    return turn
