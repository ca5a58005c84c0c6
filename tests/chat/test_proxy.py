"""The proxy turn against the real demo agent over HTTP: replies, the request log, failures."""

import json

import pytest
from django.core.exceptions import ValidationError

from agents.conversations import conversation_create
from agents.models import Conversation, RequestLog
from tests.support.turns import chat_turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(demo_deployment, stakeholder):
    return conversation_create(deployment=demo_deployment, user=stakeholder)


def send(conversation, message="What is MLflow tracing?", custom_inputs=None, **kwargs):
    return chat_turn(
        deployment=conversation.deployment,
        user=conversation.user,
        conversation=conversation,
        message=message,
        custom_inputs={} if custom_inputs is None else custom_inputs,
        **kwargs,
    )


def test_a_turn_returns_the_answer_its_trace_and_logs_it(conversation):
    turn = send(conversation, custom_inputs={"top_k": 2, "style": "bullets"})
    assert turn.error == ""
    assert turn.status_code == 200
    assert turn.response.startswith("- ")  # the bullets style
    assert turn.custom_outputs["top_k"] == 2
    assert turn.trace["info"]["client_request_id"] == turn.databricks_request_id
    logged = RequestLog.objects.get()
    assert logged.pk == turn.pk
    assert logged.request == "What is MLflow tracing?"
    assert logged.conversation_id == conversation.pk
    assert logged.custom_inputs == {"top_k": 2, "style": "bullets"}
    assert logged.request_metadata == {
        "endpoint": "agents_main-demo-rag_agent",
        "model": "main.demo.rag_agent",
        "version": "1",
    }
    assert logged.execution_time_ms >= 0 and logged.timestamp_ms > 0
    sent = json.loads(logged.request_raw)
    assert sent["databricks_options"] == {
        "return_trace": True,
        "conversation_id": str(conversation.pk),
    }
    assert json.loads(logged.response_raw)["databricks_output"]["databricks_request_id"] == (
        turn.databricks_request_id
    )
    conversation.refresh_from_db()
    assert conversation.title == "What is MLflow tracing?"
    assert conversation.custom_inputs == {"top_k": 2, "style": "bullets"}


def test_every_turn_sends_the_whole_history(conversation):
    first = send(conversation, "What is MLflow tracing?")
    second = send(conversation, "And the review app?")
    messages = json.loads(second.request_raw)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == first.response
    assert messages[2]["content"] == "And the review app?"


def test_failed_turns_are_left_out_of_the_history(conversation, demo_agent):
    send(conversation, custom_inputs={"simulate": {"status": 500}})
    turn = send(conversation, "Try again")
    assert [m["content"] for m in json.loads(turn.request_raw)["messages"]] == ["Try again"]


def test_a_timeout_says_the_endpoint_may_be_scaling_up(conversation):
    conversation.deployment.request_timeout_s = 1
    conversation.deployment.save()
    turn = send(conversation, custom_inputs={"simulate": {"delay_ms": 3000}})
    assert "No answer within 1 s" in turn.error
    assert "scaling up from zero" in turn.error
    assert turn.status_code == 504
    assert RequestLog.objects.get().error == turn.error


def test_a_server_error_keeps_status_and_body_excerpt(conversation):
    turn = send(conversation, custom_inputs={"simulate": {"status": 503}})
    assert turn.error == "The agent answered with an error (HTTP 503)."
    assert turn.status_code == 503
    assert turn.error_detail.startswith("HTTP 503: {")
    assert "error_code" in turn.response_raw


def test_a_body_that_is_not_json(conversation):
    turn = send(conversation, custom_inputs={"simulate": {"malformed": "not_json"}})
    assert turn.error == "The agent's answer is not valid JSON."
    assert turn.status_code == 502
    assert turn.response_raw  # kept for whoever debugs it


def test_a_body_in_the_wrong_schema(conversation):
    turn = send(conversation, custom_inputs={"simulate": {"malformed": "wrong_shape"}})
    assert turn.error.startswith("The agent's answer was not understood")
    assert "choices" in turn.error


def test_an_unreachable_endpoint(conversation):
    conversation.deployment.query_endpoint = "http://127.0.0.1:9/serving-endpoints/x/invocations"
    conversation.deployment.save()
    turn = send(conversation)
    assert turn.error == "Could not reach the agent's endpoint."
    assert turn.status_code == 502


def test_a_missing_token_is_reported_without_calling_the_agent(conversation, monkeypatch):
    monkeypatch.delenv("DEMO_BOT_TOKEN", raising=False)
    conversation.deployment.auth_kind = "env_token"
    conversation.deployment.auth_env_var = "DEMO_BOT_TOKEN"
    conversation.deployment.save()
    turn = send(conversation)
    assert turn.status_code == 401
    assert "DEMO_BOT_TOKEN is not set" in turn.error_detail


def test_raw_bodies_over_the_limit_are_cut_and_flagged(conversation, settings):
    settings.REQUEST_LOG_MAX_BODY_BYTES = 1000
    turn = send(conversation, custom_inputs={"style": "detailed", "top_k": 5})
    assert turn.error == ""  # the answer itself was read whole
    assert turn.response_raw_truncated is True
    assert len(turn.response_raw.encode()) <= 1000
    assert turn.request_raw_truncated is False


def test_an_answer_over_the_reply_limit_is_refused(conversation, settings):
    settings.AGENT_MAX_REPLY_BYTES = 2000
    turn = send(conversation, custom_inputs={"style": "detailed", "top_k": 5})
    assert "larger than 2,000 bytes" in turn.error


@pytest.mark.parametrize(
    ("custom_inputs", "expected"),
    [
        ([1, 2], "must be a JSON object"),
        ({"blob": "x" * 70_000}, "at most 65536"),
    ],
)
def test_bad_custom_inputs_send_and_log_nothing(conversation, custom_inputs, expected):
    with pytest.raises(ValidationError, match=expected):
        send(conversation, custom_inputs=custom_inputs)
    assert not RequestLog.objects.exists()


def test_custom_inputs_are_checked_against_the_schema(conversation):
    deployment = conversation.deployment
    deployment.custom_inputs_schema = {
        "type": "object",
        "properties": {"top_k": {"type": "integer", "maximum": 10}},
    }
    deployment.save()
    with pytest.raises(ValidationError, match="At top_k: 50 is greater than the maximum of 10"):
        send(conversation, custom_inputs={"top_k": 50})
    assert not RequestLog.objects.exists()


def test_an_empty_message_or_a_disabled_deployment_is_refused(conversation):
    with pytest.raises(ValidationError, match="Type a message"):
        send(conversation, message="   ")
    conversation.deployment.enabled = False
    conversation.deployment.save()
    with pytest.raises(ValidationError, match="disabled"):
        send(conversation)
    assert not RequestLog.objects.exists()
    assert Conversation.objects.count() == 1


@pytest.mark.parametrize("agent_id", ["../../admin", 'x" onmouseover="alert(1)', "a" * 300, ""])
def test_an_unusable_request_id_from_the_agent_is_replaced(conversation, monkeypatch, agent_id):
    """The outgoing call is faked here (the one seam): the demo agent only sends clean ids."""
    from agents.client import AgentResponse
    from agents.turns import call

    body = {
        "choices": [{"message": {"role": "assistant", "content": "Hi"}}],
        "databricks_output": {"databricks_request_id": agent_id},
    }

    async def fake_post_json(*args, **kwargs):
        return AgentResponse(200, json.dumps(body), body)

    monkeypatch.setattr(call, "post_json", fake_post_json)
    turn = send(conversation)
    assert turn.databricks_request_id != agent_id
    assert len(turn.databricks_request_id) == 36  # a uuid of ours
    assert turn.request_metadata.get("agent_request_id", "") == agent_id[:500]


def test_a_clean_agent_request_id_is_kept(conversation):
    turn = send(conversation)
    assert turn.databricks_request_id == turn.trace["info"]["client_request_id"]
    assert "agent_request_id" not in turn.request_metadata
