"""Smoke checks of the real agent servers the client tests run against: agentbricks' Agent Runtime
behind the fake Apps ingress and workspace OAuth (tests/support/agent_runtime.py), and
databricks-ai-bridge's LongRunningAgentServer on local PostgreSQL
(tests/support/long_running_server.py). They pin the wire shapes the app's client relies on and
show that the test-only facilities (stream cut, token lifetime, stats) do what they say.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support.agent_runtime import AgentRuntimeServer
from tests.support.long_running_server import LongRunningServer

QUESTION = "how do durable agents resume"
ANSWER = f"Echo: {QUESTION}"


@dataclass
class SseRead:
    frames: list[dict[str, Any]] = field(default_factory=list)  # {"id", "event", "data"}
    error: Exception | None = None  # how the connection ended, if not cleanly

    @property
    def data(self) -> list[Any]:
        return [f["data"] for f in self.frames]


def _frame(lines: list[str]) -> dict[str, Any]:
    frame: dict[str, Any] = {}
    for line in lines:
        name, _, value = line.partition(":")
        frame[name] = value.removeprefix(" ")
    data = frame.get("data")
    if data is not None and data != "[DONE]":
        frame["data"] = json.loads(data)
    return frame


def read_sse(method: str, url: str, **kwargs: Any) -> SseRead:
    """Every complete SSE frame of the response, and the error that ended it, if any."""
    read, lines = SseRead(), []
    try:
        with httpx.stream(method, url, timeout=30, **kwargs) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line:
                    lines.append(line)
                elif lines:
                    read.frames.append(_frame(lines))
                    lines = []
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        read.error = exc
    return read


def _messages(text: str = QUESTION) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# --- Agent Runtime (DurableAgentServer) behind the fake Apps ingress ----------------------------


@pytest.fixture
def runtime(agent_runtime_server: AgentRuntimeServer) -> AgentRuntimeServer:
    agent_runtime_server.reset()
    return agent_runtime_server


def _invocation(**fields: Any) -> dict[str, Any]:
    custom_inputs = fields.pop("custom_inputs", {})
    body = {
        "id": str(uuid.uuid4()),
        "input": {"messages": _messages(), "custom_inputs": custom_inputs},
    }
    return {**body, **fields}


def _deltas(read: SseRead) -> str:
    return "".join(d["content"] for d in read.data if d["type"] == "delta")


def test_runtime_oauth_token_through_databricks_sdk(runtime: AgentRuntimeServer):
    import os

    from databricks.sdk.core import Config

    config = Config(
        host=runtime.url,
        client_id=runtime.client_id,
        client_secret=os.environ[runtime.secret_env_var],
        auth_type="oauth-m2m",
    )
    headers = config.authenticate()
    assert headers["Authorization"].startswith("Bearer fake-oauth-")
    stats = runtime.stats()
    assert stats["tokens_issued"] == 1
    assert [r[:2] for r in stats["requests"]] == [
        ["GET", "/.well-known/databricks-config"],
        ["GET", "/oidc/.well-known/oauth-authorization-server"],
        ["POST", "/oidc/v1/token"],
    ]
    response = httpx.post(runtime.invocations_url, json=_invocation(), headers=headers, timeout=30)
    assert response.status_code == 200


def test_runtime_token_endpoint_refuses_wrong_secret(runtime: AgentRuntimeServer):
    response = httpx.post(
        runtime.token_url,
        data={"grant_type": "client_credentials", "scope": "all-apis"},
        auth=(runtime.client_id, "wrong"),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    good = httpx.post(
        runtime.token_url,
        data={"grant_type": "client_credentials", "scope": "all-apis"},
        auth=(runtime.client_id, runtime.client_secret),
    ).json()
    assert good["token_type"] == "Bearer" and good["expires_in"] == 3600
    assert good["scope"] == "all-apis"


def test_runtime_sync_answer_carries_a_real_trace(runtime: AgentRuntimeServer):
    body = _invocation()
    response = httpx.post(
        runtime.invocations_url, json=body, headers=runtime.auth_headers(), timeout=30
    )
    assert response.status_code == 200
    payload = response.json()
    assert payload["id"] == body["id"] and payload["status"] == "completed"
    output = payload["output"]
    assert output["output"] == [{"role": "assistant", "content": ANSWER}]
    assert output["status"] == "completed"
    trace = output["databricks_output"]["trace"]
    assert trace["info"]["trace_id"].startswith("tr-")
    assert [s["name"] for s in trace["data"]["spans"]] == ["echo_agent", "compose_answer"]
    assert runtime.stats()["invocations"] == {body["id"]: 1}


def test_runtime_stream(runtime: AgentRuntimeServer):
    body = _invocation(stream=True)
    read = read_sse("POST", runtime.invocations_url, json=body, headers=runtime.auth_headers())
    assert read.error is None
    assert read.frames[0]["event"] == "run.started"
    assert read.frames[-1]["event"] == "run.completed"
    assert _deltas(read) == ANSWER
    ids = [int(f["id"]) for f in read.frames]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_runtime_background_then_poll(runtime: AgentRuntimeServer):
    headers = runtime.auth_headers()
    body = _invocation(background=True, custom_inputs={"delay_s": 0.5})
    accepted = httpx.post(runtime.invocations_url, json=body, headers=headers, timeout=30)
    assert accepted.status_code == 202
    assert accepted.json() == {
        "id": body["id"],
        "status": "queued",
        "status_url": f"/api/invocations/{body['id']}",
    }
    deadline = time.monotonic() + 20
    while True:
        status = httpx.get(f"{runtime.url}/api/invocations/{body['id']}", headers=headers).json()
        if status["status"] in ("completed", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status["status"] == "completed"
    assert status["output"]["output"][0]["content"] == ANSWER


def test_runtime_background_stream_and_resume(runtime: AgentRuntimeServer):
    headers = runtime.auth_headers()
    body = _invocation(background=True, stream=True)
    accepted = httpx.post(runtime.invocations_url, json=body, headers=headers, timeout=30).json()
    assert accepted["events_url"] == f"/api/invocations/{body['id']}/events"
    whole = read_sse("GET", runtime.url + accepted["events_url"], headers=headers)
    assert whole.error is None and _deltas(whole) == ANSWER
    second = whole.frames[1]["id"]
    rest = read_sse("GET", f"{runtime.url}{accepted['events_url']}?after={second}", headers=headers)
    assert rest.frames == whole.frames[2:]


def test_runtime_cut_stream_resumes_from_last_id(runtime: AgentRuntimeServer):
    headers = runtime.auth_headers()
    runtime.cut_next_stream(after=2)
    body = _invocation(stream=True, custom_inputs={"delay_s": 0.5})
    cut = read_sse("POST", runtime.invocations_url, json=body, headers=headers)
    assert isinstance(cut.error, httpx.RemoteProtocolError)
    assert [f["event"] for f in cut.frames] == ["run.started", "delta"]
    events = f"{runtime.invocations_url}/{body['id']}/events?after={cut.frames[-1]['id']}"
    rest = read_sse("GET", events, headers=headers)
    assert rest.error is None and rest.frames[-1]["event"] == "run.completed"
    assert _deltas(cut) + _deltas(rest) == ANSWER
    stats = runtime.stats()
    assert stats["invocations"] == {body["id"]: 1} and stats["streams_cut"] == 1


def test_runtime_failure(runtime: AgentRuntimeServer):
    headers = runtime.auth_headers()
    failed = httpx.post(
        runtime.invocations_url,
        json=_invocation(custom_inputs={"fail": True}),
        headers=headers,
        timeout=30,
    )
    assert failed.status_code == 500
    assert failed.json() == {"detail": "agent invocation failed"}
    read = read_sse(
        "POST",
        runtime.invocations_url,
        json=_invocation(stream=True, custom_inputs={"fail": True}),
        headers=headers,
    )
    assert [f["event"] for f in read.frames] == ["run.started", "run.failed"]


def test_runtime_ingress_refuses_pat_missing_unknown_and_expired_tokens(
    runtime: AgentRuntimeServer,
):
    def call(headers: dict[str, str]) -> httpx.Response:
        return httpx.post(runtime.invocations_url, json=_invocation(), headers=headers, timeout=30)

    pat = call({"Authorization": "Bearer dapi0123456789abcdef"})
    assert pat.status_code == 401
    assert "Personal access tokens are not accepted for Databricks Apps" in pat.text
    assert call({}).status_code == 401
    assert call({"Authorization": "Bearer not-issued"}).status_code == 401
    runtime.set_token_lifetime(0)
    expired = call(runtime.auth_headers())
    assert expired.status_code == 401 and "expired" in expired.json()["message"]
    assert [r[2] for r in runtime.stats()["requests"] if r[1] == "/api/invocations"] == [
        "pat",
        "none",
        "oauth",
        "oauth",
    ]
    assert runtime.stats()["invocations"] == {}


# --- LongRunningAgentServer on local PostgreSQL ------------------------------------------------


@pytest.fixture
def long_running(long_running_server: LongRunningServer) -> LongRunningServer:
    long_running_server.reset()
    return long_running_server


def _text(data: list[Any]) -> str:
    return "".join(
        d["delta"] for d in data if d != "[DONE]" and d.get("type") == "response.output_text.delta"
    )


def test_long_running_sync_with_trace(long_running: LongRunningServer):
    response = long_running.post({"input": _messages()})
    assert response.status_code == 200
    payload = response.json()
    assert payload["output"][0]["content"][0]["text"] == ANSWER
    trace = long_running.wait_for_trace(payload["metadata"]["trace_id"])
    assert trace.info.trace_id == payload["metadata"]["trace_id"]
    assert long_running.stats()["foreground_runs"] == 1


def test_long_running_stream(long_running: LongRunningServer):
    read = read_sse(
        "POST",
        long_running.responses_url,
        json={"input": _messages(), "stream": True},
        headers={"x-mlflow-return-trace-id": "true"},
    )
    assert read.error is None and read.data[-1] == "[DONE]"
    assert _text(read.data) == ANSWER
    assert read.data[-3]["type"] == "response.output_item.done"
    long_running.wait_for_trace(read.data[-2]["trace_id"])


def test_long_running_background_then_poll(long_running: LongRunningServer):
    accepted = long_running.post({"input": _messages(), "background": True})
    assert accepted.status_code == 200
    created = accepted.json()
    assert created["id"].startswith("resp_") and created["status"] == "in_progress"
    deadline = time.monotonic() + 20
    while True:
        status = httpx.get(f"{long_running.responses_url}/{created['id']}").json()
        if status["status"] != "in_progress" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status["status"] == "completed"
    assert status["output"][0]["content"][0]["text"] == ANSWER
    long_running.wait_for_trace(status["metadata"]["trace_id"])
    assert long_running.stats()["runs"] == {created["id"]: 1}


def test_long_running_background_stream_and_resume(long_running: LongRunningServer):
    read = read_sse(
        "POST",
        long_running.responses_url,
        json={"input": _messages(), "background": True, "stream": True},
        headers={"x-mlflow-return-trace-id": "true"},
    )
    # The library sends event 0 twice when it was alone at the stream's first poll (to it,
    # `starting_after=0` means "from the start"): a client drops what it has seen, as the app does.
    events = list({event["sequence_number"]: event for event in read.data[:-1]}.values())
    assert read.error is None and _text(events) == ANSWER
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    response_id = events[0]["response_id"]
    assert events[-1]["trace_id"]
    resumed = read_sse(
        "GET",
        f"{long_running.responses_url}/{response_id}",
        params={"stream": "true", "starting_after": 2},
    )
    assert resumed.data == [*events[3:], "[DONE]"]


def test_long_running_cut_stream_resumes_from_last_sequence_number(long_running: LongRunningServer):
    long_running.cut_next_stream(after=2)
    cut = read_sse(
        "POST",
        long_running.responses_url,
        json={
            "input": _messages(),
            "background": True,
            "stream": True,
            "custom_inputs": {"delay_s": 0.5},
        },
    )
    assert isinstance(cut.error, httpx.RemoteProtocolError)
    assert len(cut.frames) == 2
    last = cut.data[-1]
    rest = read_sse(
        "GET",
        f"{long_running.responses_url}/{last['response_id']}",
        params={"stream": "true", "starting_after": last["sequence_number"]},
    )
    assert rest.error is None and rest.data[-1] == "[DONE]"
    assert _text(cut.data) + _text(rest.data) == ANSWER
    stats = long_running.stats()
    assert stats["runs"] == {last["response_id"]: 1} and stats["streams_cut"] == 1
