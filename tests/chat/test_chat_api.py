"""POST /api/v1/deployments/{id}/chat/ and the request log API."""

import pytest

from agents.models import RequestLog

pytestmark = pytest.mark.django_db


def chat_api(deployment):
    return f"/api/v1/deployments/{deployment.pk}/chat/"


def test_a_turn_answers_with_message_outputs_and_normalized_trace(
    api_client, stakeholder, demo_deployment
):
    api_client.force_authenticate(stakeholder)
    response = api_client.post(
        chat_api(demo_deployment),
        {"message": "What is MLflow tracing?", "custom_inputs": {"top_k": 2}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    turn = RequestLog.objects.get()
    assert body["request_id"] == turn.databricks_request_id
    assert body["conversation_id"] == str(turn.conversation_id)
    assert body["message"]["role"] == "assistant" and body["message"]["content"] == turn.response
    assert body["custom_outputs"]["top_k"] == 2
    assert body["execution_time_ms"] >= 0
    [root] = body["trace"]["roots"]
    assert root["span_type"] == "AGENT"
    assert {c["span_type"] for c in root["children"]} == {"RETRIEVER", "CHAT_MODEL"}


def test_a_conversation_continues_and_messages_replace_the_history(
    api_client, stakeholder, demo_deployment
):
    api_client.force_authenticate(stakeholder)
    first = api_client.post(chat_api(demo_deployment), {"message": "Hi"}, format="json").json()
    second = api_client.post(
        chat_api(demo_deployment),
        {"message": "More", "conversation_id": first["conversation_id"]},
        format="json",
    ).json()
    assert second["conversation_id"] == first["conversation_id"]
    stateless = api_client.post(
        chat_api(demo_deployment),
        {
            "messages": [
                {"role": "user", "content": "A"},
                {"role": "assistant", "content": "B"},
                {"role": "user", "content": "C"},
            ]
        },
        format="json",
    )
    assert stateless.status_code == 200
    assert stateless.json()["conversation_id"] != first["conversation_id"]


def test_an_agent_failure_is_a_502_with_the_request_id(api_client, stakeholder, demo_deployment):
    api_client.force_authenticate(stakeholder)
    response = api_client.post(
        chat_api(demo_deployment),
        {"message": "Hi", "custom_inputs": {"simulate": {"malformed": "not_json"}}},
        format="json",
    )
    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "The agent's answer is not valid JSON."
    assert RequestLog.objects.get().databricks_request_id == body["request_id"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "non_field_errors"),
        ({"message": "a", "messages": [{"role": "user", "content": "b"}]}, "non_field_errors"),
        (
            {"messages": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]},
            "messages",
        ),
        ({"message": "a", "conversation_id": "not-a-uuid"}, "conversation_id"),
        ({"message": "a", "custom_inputs": [1]}, "non_field_errors"),
    ],
)
def test_bad_input_is_a_400_and_nothing_is_sent(
    api_client, stakeholder, demo_deployment, payload, field
):
    api_client.force_authenticate(stakeholder)
    response = api_client.post(chat_api(demo_deployment), payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not RequestLog.objects.exists()


def test_invalid_json_is_a_400(api_client, stakeholder, demo_deployment):
    api_client.force_authenticate(stakeholder)
    response = api_client.post(chat_api(demo_deployment), "{nope", content_type="application/json")
    assert response.status_code == 400


def test_request_detail_and_list_follow_the_permissions(
    api_client, stakeholder, reviewer, stranger, demo_deployment, django_user_model
):
    from django.contrib.auth.models import Group

    other = django_user_model.objects.create_user("other-stakeholder")
    other.groups.add(Group.objects.get(name="stakeholder"))
    api_client.force_authenticate(stakeholder)
    mine = api_client.post(chat_api(demo_deployment), {"message": "Hi"}, format="json").json()
    api_client.force_authenticate(other)
    theirs = api_client.post(chat_api(demo_deployment), {"message": "Yo"}, format="json").json()

    api_client.force_authenticate(stakeholder)
    detail = api_client.get(f"/api/v1/requests/{mine['request_id']}/")
    assert detail.status_code == 200 and detail.json()["trace"]["roots"]
    assert api_client.get(f"/api/v1/requests/{theirs['request_id']}/").status_code == 404
    listed = api_client.get("/api/v1/requests/").json()["results"]
    assert [r["request_id"] for r in listed] == [mine["request_id"]]
    assert "trace" not in listed[0]

    api_client.force_authenticate(reviewer)
    assert api_client.get(f"/api/v1/requests/{theirs['request_id']}/").status_code == 200
    by_conversation = api_client.get(
        "/api/v1/requests/", {"conversation_id": mine["conversation_id"]}
    )
    assert [r["request_id"] for r in by_conversation.json()["results"]] == [mine["request_id"]]
    by_deployment = api_client.get("/api/v1/requests/", {"deployment": demo_deployment.pk})
    assert len(by_deployment.json()["results"]) == 2

    api_client.force_authenticate(stranger)
    assert api_client.get(f"/api/v1/requests/{mine['request_id']}/").status_code == 404
    assert (
        api_client.post(chat_api(demo_deployment), {"message": "Hi"}, format="json").status_code
        == 403
    )
    api_client.force_authenticate(None)
    assert api_client.get("/api/v1/requests/").status_code == 401


def test_the_trace_can_be_had_raw_or_left_out(api_client, stakeholder, demo_deployment):
    api_client.force_authenticate(stakeholder)
    turn = api_client.post(chat_api(demo_deployment), {"message": "Hi"}, format="json").json()
    url = f"/api/v1/requests/{turn['request_id']}/"
    raw = api_client.get(url, {"trace": "raw"}).json()["trace"]
    assert raw["info"]["client_request_id"] == turn["request_id"]
    assert "trace" not in api_client.get(url, {"trace": "none"}).json()
    assert api_client.get(url, {"trace": "everything"}).status_code == 400
