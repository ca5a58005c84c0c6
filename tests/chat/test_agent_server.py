"""Integration of two real servers: MLflow's AgentServer (tests/support/agent_server.py) and the
`mlflow server` it traces to (tests/support/mlflow_server.py).

First what the AgentServer itself answers when asked for the trace id (the shapes the app's
adapters read), then whole turns through the app's API: the answer comes from the AgentServer,
the trace from the tracking server, and a rating lands on that trace.

The AgentServer exports a trace a moment after answering (its batch interval is shortened in
the fixture), so the tests ask again for a while, as a reviewer reopening the panel would.
"""

import json
import time

import httpx
import pytest

from agents import tracking
from agents.models import RequestLog
from agents.traces import normalize_trace
from feedback import delivery as delivery_service
from feedback import services
from feedback.models import Delivery, DeliveryStatus
from tests.support.agent_server_app import DOCUMENTS, expected_answer

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

QUESTION = "How does the AgentServer return the trace id?"
BODY = {
    "input": [{"role": "user", "content": QUESTION}],
    "custom_inputs": {"k": 1},
    "context": {"conversation_id": "c-1", "user_id": "u-1"},
}
TRACE_WAIT_S = 30.0


@pytest.fixture(autouse=True)
def quiet_mlflow_client(monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")


def sse_events(text: str) -> list:
    """The `data:` payloads of an SSE body, JSON-decoded; `[DONE]` kept as the string."""
    events = []
    for line in text.splitlines():
        if line.startswith("data: "):
            payload = line.removeprefix("data: ")
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def assert_agent_tree(trace, root_name: str) -> None:
    [root] = trace.roots
    assert root.name == root_name
    retriever, llm = root.children
    assert (retriever.name, retriever.span_type) == ("retrieve_docs", "RETRIEVER")
    assert [d.chunk_id for d in retriever.documents] == ["a2", "a1"]
    assert retriever.documents[0].page_content == DOCUMENTS[1].page_content
    assert (llm.name, llm.span_type) == ("compose_answer", "CHAT_MODEL")


# --- The AgentServer on its own ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/responses", "/invocations"])
def test_the_agent_server_returns_the_trace_id_in_metadata(mlflow_agent_server, path):
    response = mlflow_agent_server.post(path, BODY)

    assert response.status_code == 200, response.text
    body = response.json()
    [item] = body["output"]
    assert item["type"] == "message" and item["role"] == "assistant"
    assert item["content"] == [
        {"type": "output_text", "text": expected_answer(QUESTION), "annotations": []}
    ]
    assert body["custom_outputs"] == {
        "custom_inputs": {"k": 1},
        "context": {"conversation_id": "c-1", "user_id": "u-1"},
    }
    trace_id = body["metadata"]["trace_id"]
    assert trace_id.startswith("tr-") and len(trace_id) == 35
    trace = tracking.fetch_trace(mlflow_agent_server.tracking_uri, trace_id, wait_s=TRACE_WAIT_S)
    assert_agent_tree(normalize_trace(trace), "answer")


def test_the_agent_server_streams_deltas_then_the_trace_id(mlflow_agent_server):
    response = mlflow_agent_server.post("/invocations", {**BODY, "stream": True})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    *deltas, done, trace_event, end = sse_events(response.text)
    assert {d["type"] for d in deltas} == {"response.output_text.delta"}
    assert "".join(d["delta"] for d in deltas) == expected_answer(QUESTION)
    assert done["type"] == "response.output_item.done"
    assert done["item"]["id"] == deltas[0]["item_id"]
    assert done["item"]["content"][0]["text"] == expected_answer(QUESTION)
    assert list(trace_event) == ["trace_id"] and end == "[DONE]"
    trace = tracking.fetch_trace(
        mlflow_agent_server.tracking_uri, trace_event["trace_id"], wait_s=TRACE_WAIT_S
    )
    assert_agent_tree(normalize_trace(trace), "answer_stream")


def test_without_the_header_no_trace_id_comes_back(mlflow_agent_server):
    response = httpx.post(mlflow_agent_server.responses_url, json=BODY, timeout=60)

    assert response.status_code == 200
    assert "metadata" not in response.json()


def test_the_agent_servers_error_shapes(mlflow_agent_server):
    failing = {"input": [{"role": "user", "content": "FAIL: please"}]}

    plain = mlflow_agent_server.post("/responses", failing)
    streamed = mlflow_agent_server.post("/responses", {**failing, "stream": True})
    invalid = mlflow_agent_server.post("/responses", {"messages": [{"role": "user"}]})

    assert (plain.status_code, plain.json()) == (
        500,
        {"detail": "The test agent was asked to fail."},
    )
    assert streamed.status_code == 200
    assert sse_events(streamed.text) == [{"error": "The test agent was asked to fail."}, "[DONE]"]
    assert invalid.status_code == 400
    assert invalid.json()["detail"].startswith("Invalid parameters for ResponsesAgent:")


# --- Turns through the app -----------------------------------------------------------------------


def agent_server_deployment(deployment_factory, server, path: str):
    return deployment_factory(
        endpoint_kind="mlflow_agent_server",
        agent_schema="responses",
        query_endpoint=f"{server.url}{path}",
        mlflow_tracking_uri=server.tracking_uri,
        feedback_sink="mlflow_assessments",
    )


def chat(api_client, deployment) -> dict:
    response = api_client.post(
        f"/api/v1/deployments/{deployment.pk}/chat/", {"message": QUESTION}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def request_with_trace(api_client, request_id: str) -> dict:
    """GET /api/v1/requests/{id}/ until its trace is there (the export takes a moment)."""
    deadline = time.monotonic() + TRACE_WAIT_S
    while True:
        body = api_client.get(f"/api/v1/requests/{request_id}/").json()
        if body["trace"] is not None or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


@pytest.mark.parametrize("path", ["/responses", "/invocations"])
def test_a_turn_answers_from_the_agent_server_with_the_trace_from_mlflow(
    api_client, reviewer, deployment_factory, mlflow_agent_server, path
):
    deployment = agent_server_deployment(deployment_factory, mlflow_agent_server, path)
    api_client.force_login(reviewer)

    answer = chat(api_client, deployment)

    assert answer["message"]["content"] == expected_answer(QUESTION)
    turn = RequestLog.objects.get(databricks_request_id=answer["request_id"])
    assert turn.mlflow_trace_id.startswith("tr-")
    detail = request_with_trace(api_client, answer["request_id"])
    assert detail["trace"] is not None, "the trace never came from the tracking server"
    assert detail["trace"]["trace_id"] == turn.mlflow_trace_id
    [root] = detail["trace"]["roots"]
    assert root["name"] == "answer"
    names = [(c["name"], c["span_type"]) for c in root["children"]]
    assert names == [("retrieve_docs", "RETRIEVER"), ("compose_answer", "CHAT_MODEL")]
    turn.refresh_from_db()
    assert turn.trace["info"]["trace_id"] == turn.mlflow_trace_id  # kept for the next view


def test_a_streamed_turn_relays_the_agent_servers_deltas_and_keeps_its_trace_id(
    api_client, reviewer, deployment_factory, mlflow_agent_server
):
    deployment = agent_server_deployment(deployment_factory, mlflow_agent_server, "/responses")
    deployment.streaming = True
    deployment.save()
    api_client.force_login(reviewer)
    response = api_client.post(
        f"/api/v1/deployments/{deployment.pk}/chat/",
        {"message": QUESTION, "stream": True},
        format="json",
    )
    blocks = b"".join(response).decode().strip().split("\n\n")
    events = [
        (b.split("\n")[0].removeprefix("event: "), json.loads(b.split("data: ", 1)[1]))
        for b in blocks
    ]
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) > 1
    name, done = events[-1]
    assert name == "done" and done["message"]["content"] == "".join(deltas)
    assert done["message"]["content"] == expected_answer(QUESTION)
    turn = RequestLog.objects.get(databricks_request_id=done["request_id"])
    assert turn.mlflow_trace_id.startswith("tr-")  # from the stream's {"trace_id"} event
    detail = request_with_trace(api_client, done["request_id"])
    assert detail["trace"]["trace_id"] == turn.mlflow_trace_id


def test_the_trace_panel_of_an_agent_server_turn_shows_the_tree(
    client, api_client, reviewer, deployment_factory, mlflow_agent_server
):
    deployment = agent_server_deployment(deployment_factory, mlflow_agent_server, "/responses")
    api_client.force_login(reviewer)
    client.force_login(reviewer)
    answer = chat(api_client, deployment)
    url = f"/requests/{answer['request_id']}/trace/"

    deadline = time.monotonic() + TRACE_WAIT_S
    html = client.get(url).content.decode()
    while "not available from the tracking server" in html and time.monotonic() < deadline:
        assert "Try again" in html
        time.sleep(0.3)
        html = client.get(url).content.decode()

    assert "retrieve_docs" in html and "3 spans" in html


def test_a_rating_of_an_agent_server_turn_lands_on_its_mlflow_trace(
    api_client, reviewer, deployment_factory, mlflow_agent_server, mlflow_server
):
    deployment = agent_server_deployment(deployment_factory, mlflow_agent_server, "/responses")
    api_client.force_login(reviewer)
    turn = RequestLog.objects.get(databricks_request_id=chat(api_client, deployment)["request_id"])
    # The assessments API needs the trace on the server; the rating itself does not.
    mlflow_agent_server.wait_for_trace(turn.mlflow_trace_id, spans=3)

    rating = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[{"ratings": {"answer_correct": {"value": "negative"}}}],
    )
    delivery = Delivery.objects.get(rating=rating)
    delivery_service.delivery_run(delivery.pk)
    delivery.refresh_from_db()

    assert (delivery.status, delivery.last_error) == (DeliveryStatus.SENT, "")
    [assessment] = mlflow_server.trace(turn.mlflow_trace_id).info.assessments
    assert (assessment.name, assessment.feedback.value) == ("answer_correct", False)
