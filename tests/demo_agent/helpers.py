"""Small helpers shared by the demo agent's tests."""

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
