"""A double click or a retried POST sends a turn once (one idempotency key per turn), and the
stream endpoints of the page and the API, through the real demo agent."""

import json
import threading

import pytest
from django.db import connection

from agents.conversations import conversation_create
from agents.models import RequestLog, TurnKey
from tests.support.turns import chat_turn

pytestmark = pytest.mark.integration


def send(deployment, user, conversation, key, message="What is MLflow tracing?", **inputs):
    return chat_turn(
        deployment=deployment,
        user=user,
        conversation=conversation,
        message=message,
        custom_inputs=inputs,
        idempotency_key=key,
    )


@pytest.mark.django_db
def test_a_retried_send_with_the_same_key_returns_the_first_turn(demo_deployment, reviewer):
    conversation = conversation_create(deployment=demo_deployment, user=reviewer)
    first = send(demo_deployment, reviewer, conversation, "key-1")
    again = send(demo_deployment, reviewer, conversation, "key-1")
    other = send(demo_deployment, reviewer, conversation, "key-2")
    assert again.pk == first.pk
    assert other.pk != first.pk
    assert RequestLog.objects.count() == 2
    assert TurnKey.objects.get(key="key-1").turn_id == first.pk


@pytest.mark.django_db(transaction=True)
def test_two_sends_at_once_with_one_key_reach_the_agent_once(demo_deployment, reviewer):
    conversation = conversation_create(deployment=demo_deployment, user=reviewer)
    results: list = []

    def click() -> None:
        try:
            # The agent waits 700 ms, so the second click arrives while the first is in flight.
            results.append(
                send(demo_deployment, reviewer, conversation, "dbl", simulate={"delay_ms": 700})
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2
    assert results[0].pk == results[1].pk
    assert RequestLog.objects.count() == 1


@pytest.mark.django_db
def test_the_page_resends_a_key_without_starting_another_conversation(
    client, demo_deployment, reviewer
):
    client.force_login(reviewer)
    form = {"message": "What is MLflow tracing?", "custom_inputs": "{}", "idempotency_key": "k9"}
    first = client.post(f"/chat/{demo_deployment.pk}/send/", form, HTTP_HX_REQUEST="true")
    again = client.post(f"/chat/{demo_deployment.pk}/send/", form, HTTP_HX_REQUEST="true")
    assert first.status_code == again.status_code == 200
    turn = RequestLog.objects.get()
    assert f'id="turn-{turn.databricks_request_id}"' in again.content.decode()
    assert reviewer.conversations.count() == 1


@pytest.mark.django_db
def test_the_stream_endpoint_sends_deltas_then_the_rendered_turn(
    client, deployment_factory, demo_agent, reviewer
):
    endpoint = "agents_main-demo-chat_agent"
    deployment = deployment_factory(
        endpoint_name=endpoint,
        query_endpoint=f"{demo_agent.url}/serving-endpoints/{endpoint}/invocations",
        agent_schema="chat_agent",
        streaming=True,
    )
    client.force_login(reviewer)
    response = client.post(
        f"/chat/{deployment.pk}/stream/",
        {"message": "What is a trace?", "custom_inputs": "{}", "idempotency_key": "s1"},
    )
    assert response["Content-Type"] == "text/event-stream"
    events = parse_sse(b"".join(response).decode())
    names = [name for name, _ in events]
    assert names[0] in ("delta", "item") and names[-1] == "done"
    assert "item" in names  # the search_docs tool call
    turn = RequestLog.objects.get()
    assert "".join(d["text"] for n, d in events if n == "delta") == turn.response
    done = events[-1][1]
    assert f'id="turn-{turn.databricks_request_id}"' in done["html"]
    assert done["url"].endswith(f"?c={turn.conversation_id}")
    # After Stop the browser fetches the saved turn by its key.
    by_key = client.get(f"/chat/{deployment.pk}/turn/?key=s1")
    assert by_key.status_code == 200 and turn.databricks_request_id in by_key.content.decode()
    assert client.get(f"/chat/{deployment.pk}/turn/?key=nope").status_code == 404


@pytest.mark.django_db
def test_the_stream_endpoint_refuses_bad_input_before_sending(client, demo_deployment, reviewer):
    demo_deployment.streaming = True
    demo_deployment.save()
    client.force_login(reviewer)
    response = client.post(
        f"/chat/{demo_deployment.pk}/stream/", {"message": "   ", "custom_inputs": "{}"}
    )
    assert response.status_code == 422
    assert "Type a message first." in response.content.decode()
    assert RequestLog.objects.count() == 0


@pytest.mark.django_db
def test_the_api_streams_when_asked_and_answers_whole_otherwise(
    api_client, demo_deployment, reviewer
):
    demo_deployment.streaming = True
    demo_deployment.save()
    api_client.force_login(reviewer)
    url = f"/api/v1/deployments/{demo_deployment.pk}/chat/"
    whole = api_client.post(url, {"message": "What is tracing?"}, format="json")
    assert whole.status_code == 200 and whole.json()["message"]["content"]
    stream = api_client.post(url, {"message": "What is tracing?", "stream": True}, format="json")
    events = parse_sse(b"".join(stream).decode())
    assert events[-1][0] == "done"
    done = events[-1][1]
    assert done["message"]["content"] == "".join(d["text"] for n, d in events if n == "delta")
    assert done["trace"]["roots"]
    replay = api_client.post(
        url, {"message": "What is tracing?", "idempotency_key": "api-1"}, format="json"
    )
    again = api_client.post(
        url, {"message": "What is tracing?", "idempotency_key": "api-1"}, format="json"
    )
    assert replay.json()["request_id"] == again.json()["request_id"]
    assert RequestLog.objects.count() == 3


def parse_sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events
