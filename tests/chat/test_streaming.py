"""Every agent schema, streamed and not, through the real demo agent; cut streams, stream errors,
the trace in a late chunk, `auto` detection, OpenAI-compatible endpoints."""

import json

import pytest
from asgiref.sync import async_to_sync

from agents.client import close_http_client
from agents.conversations import conversation_create
from agents.models import RequestLog
from agents.schemas import ItemAdded, TextDelta
from agents.turns import TurnDone, run_turn, turn_start
from tests.support.turns import chat_turn

pytestmark = [pytest.mark.django_db, pytest.mark.integration]
QUESTION = "How does the review app collect feedback?"
# Endpoint names choose the demo agent's schema (demo_agent/README.md).
SCHEMAS = {
    "chat_completions": "agents_main-demo-rag_agent",
    "chat_agent": "agents_main-demo-chat_agent",
    "responses": "agents_main-demo-responses_agent",
    "legacy_split": "agents_main-demo-legacy_agent",
}


@pytest.fixture
def make_deployment(deployment_factory, demo_agent):
    def make(schema: str, *, endpoint: str | None = None, **fields):
        endpoint = endpoint or SCHEMAS[schema]
        return deployment_factory(
            endpoint_name=endpoint,
            query_endpoint=f"{demo_agent.url}/serving-endpoints/{endpoint}/invocations",
            agent_schema=schema,
            **fields,
        )

    return make


def streamed(deployment, user, message=QUESTION, **inputs) -> tuple[list, RequestLog]:
    """Run one streamed turn; returns its events before the end, and the saved turn."""

    async def run():
        events = []
        try:
            started = await turn_start(
                user=user, deployment_id=deployment.pk, message=message, custom_inputs=inputs
            )
            async for event in run_turn(started, stream=True):
                events.append(event)
        finally:
            await close_http_client()
        return events

    events = async_to_sync(run)()
    assert isinstance(events[-1], TurnDone)
    return events[:-1], events[-1].turn


def sent(deployment, user, message=QUESTION, **inputs) -> RequestLog:
    conversation = conversation_create(deployment=deployment, user=user)
    return chat_turn(
        deployment=deployment,
        user=user,
        conversation=conversation,
        message=message,
        custom_inputs=inputs,
    )


def without_ids(items: list[dict]) -> list[dict]:
    """Tool call ids are new on every call."""
    return [{k: v for k, v in item.items() if k not in ("id", "call_id")} for item in items]


def text_of(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize("schema", list(SCHEMAS))
def test_each_schema_answers_with_its_trace_unstreamed(make_deployment, reviewer, schema):
    turn = sent(make_deployment(schema), reviewer)
    assert turn.error == "", turn.error_detail
    assert "evaluation dataset" in turn.response.lower()
    assert turn.trace["info"]["client_request_id"] == turn.databricks_request_id
    sent_body = json.loads(turn.request_raw)
    assert sent_body["databricks_options"]["return_trace"] is True
    assert "stream" not in sent_body
    if schema in ("chat_agent", "responses"):
        kinds = [item["kind"] for item in turn.output_items]
        assert "tool_call" in kinds and "tool_result" in kinds
        assert turn.output_items[kinds.index("tool_call")]["name"] == "search_docs"
    if schema == "responses":
        assert "reasoning" in [item["kind"] for item in turn.output_items]


@pytest.mark.parametrize("schema", list(SCHEMAS))
def test_each_schema_streams_and_the_log_keeps_the_assembled_answer(
    make_deployment, reviewer, schema
):
    deployment = make_deployment(schema, streaming=True)
    unstreamed = sent(deployment, reviewer)
    events, turn = streamed(deployment, reviewer)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 3, "the answer should arrive in pieces"
    assert turn.error == "" and not turn.incomplete, turn.error_detail
    assert turn.response == text_of(events) == unstreamed.response
    assert json.loads(turn.request_raw)["stream"] is True
    assert "data:" not in turn.response
    # The demo agent sends the request id first and the trace only with the last chunk.
    assert turn.trace is not None
    assert turn.trace["info"]["client_request_id"] == turn.databricks_request_id
    if schema in ("chat_agent", "responses"):
        items = [e.item for e in events if isinstance(e, ItemAdded)]
        assert any(item["kind"] == "tool_call" for item in items)
        assert without_ids(turn.output_items) == without_ids(unstreamed.output_items)


def test_a_cut_stream_keeps_the_partial_answer_marked_incomplete(make_deployment, reviewer):
    deployment = make_deployment("chat_completions", streaming=True)
    full = sent(deployment, reviewer).response
    events, turn = streamed(deployment, reviewer, simulate={"cut_after_chunks": 6})
    assert turn.incomplete is True
    assert "cut" in turn.error.lower()
    assert turn.response and full.startswith(turn.response) and turn.response != full
    assert turn.response == text_of(events)
    assert RequestLog.objects.filter(pk=turn.pk, incomplete=True).exists()


def test_an_error_event_in_the_stream_ends_the_turn_with_the_agents_message(
    make_deployment, reviewer
):
    deployment = make_deployment("responses", streaming=True)
    _, turn = streamed(deployment, reviewer, simulate={"stream_error": "The tool backend failed"})
    assert "The tool backend failed" in turn.error
    assert turn.status_code == 502


def test_auto_reads_the_schema_from_the_endpoints_task_and_remembers_it(make_deployment, reviewer):
    deployment = make_deployment("auto", endpoint=SCHEMAS["responses"])
    turn = sent(deployment, reviewer)
    assert turn.error == "", turn.error_detail
    assert "input" in json.loads(turn.request_raw)  # sent as a ResponsesAgent request
    deployment.refresh_from_db()
    assert deployment.detected_schema == "responses"


def test_auto_without_a_task_detects_the_schema_from_the_reply(make_deployment, reviewer):
    # An OpenAI-compatible deployment has no workspace to ask: the ChatAgent reply tells.
    deployment = make_deployment(
        "auto", endpoint=SCHEMAS["chat_agent"], endpoint_kind="openai_compatible"
    )
    first = sent(deployment, reviewer)
    assert first.error == "", first.error_detail
    assert "context" not in json.loads(first.request_raw)  # asked in chat-completions form
    deployment.refresh_from_db()
    assert deployment.detected_schema == "chat_agent"
    second = sent(deployment, reviewer)
    assert json.loads(second.request_raw)["context"]["user_id"] == reviewer.email


def test_an_openai_compatible_endpoint_gets_a_plain_request_and_shows_no_trace(
    make_deployment, reviewer, client
):
    deployment = make_deployment(
        "chat_completions",
        endpoint="openai-compatible",
        endpoint_kind="openai_compatible",
        openai_model="llama-3.1-8b",
        streaming=True,
    )
    events, turn = streamed(deployment, reviewer)
    body = json.loads(turn.request_raw)
    assert "databricks_options" not in body
    assert body["model"] == "llama-3.1-8b"
    assert turn.error == "" and turn.response == text_of(events)
    assert turn.trace is None and not turn.has_trace
    client.force_login(reviewer)
    page = client.get(f"/chat/{deployment.pk}/?c={turn.conversation_id}")
    assert "No trace returned." in page.content.decode()
