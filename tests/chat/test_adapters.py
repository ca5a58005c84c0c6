"""Request bodies and reply parsing per schema (protocol.md §1.2, §1.5), on real reply fixtures."""

import json

import pytest

from agents.adapters import (
    AgentReplyError,
    ChatCompletionsAdapter,
    LegacySplitAdapter,
    adapter_for,
)
from tests.support import SHARED_FIXTURES

HISTORY = [
    {"role": "user", "content": "What is Spark?"},
    {"role": "assistant", "content": "Spark is a data processing engine."},
    {"role": "user", "content": "How do I convert a Spark DataFrame to Pandas?"},
]


def test_chat_completions_request_carries_history_inputs_and_options():
    body = ChatCompletionsAdapter().build_request(
        messages=HISTORY, custom_inputs={"k": 1}, conversation_id="c-1"
    )
    assert body == {
        "messages": HISTORY,
        "custom_inputs": {"k": 1},
        "databricks_options": {"return_trace": True, "conversation_id": "c-1"},
    }


def test_legacy_request_splits_query_and_history():
    body = LegacySplitAdapter().build_request(
        messages=HISTORY, custom_inputs={}, conversation_id="c"
    )
    assert body["query"] == "How do I convert a Spark DataFrame to Pandas?"
    assert body["history"] == HISTORY[:2]
    assert "custom_inputs" not in body


@pytest.mark.parametrize("name", ["rag_simple", "tool_calling", "error_span"])
def test_real_replies_parse_with_their_trace(name):
    reply_body = json.loads((SHARED_FIXTURES / "traces" / f"{name}.response.json").read_text())
    reply = ChatCompletionsAdapter().parse_reply(reply_body)
    assert reply.text == reply_body["choices"][0]["message"]["content"]
    assert reply.databricks_request_id == reply_body["databricks_output"]["databricks_request_id"]
    assert reply.trace == reply_body["databricks_output"]["trace"]


def test_legacy_reply_and_content_parts():
    assert LegacySplitAdapter().parse_reply({"content": "Use df.toPandas()."}).text == (
        "Use df.toPandas()."
    )
    parts = {
        "choices": [
            {"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}
        ]
    }
    assert ChatCompletionsAdapter().parse_reply(parts).text == "ab"
    assert adapter_for("auto").parse_reply({"content": "legacy"}).text == "legacy"


@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        {},
        {"choices": []},
        {"choices": [{"nope": 1}]},
        {"choices": [{"message": {"content": 3}}]},
    ],
)
def test_garbage_is_a_clear_error(body):
    with pytest.raises(AgentReplyError):
        ChatCompletionsAdapter().parse_reply(body)


def test_schemas_not_spoken_yet_say_so():
    with pytest.raises(AgentReplyError, match="cannot talk to ChatAgent"):
        adapter_for("chat_agent")
