"""Reading an Agent Runtime invocation: the Agent Bricks templates' chat-message output, a
known agent schema inside `output`, a plain answer, and what is refused."""

import pytest

from agents.schemas import AgentReplyError, AgentRuntimeAdapter, ItemAdded, TextDelta


def test_the_request_puts_messages_and_custom_inputs_in_input():
    body = AgentRuntimeAdapter().build_request(
        messages=[{"role": "user", "content": "hi"}],
        custom_inputs={"k": 1},
        conversation_id="c-1",
        user_id="u",
        stream=False,
        databricks_options=False,
    )
    # The runtime refuses unknown top-level fields: everything of the agent's is under `input`.
    assert body == {
        "session_id": "c-1",
        "input": {"messages": [{"role": "user", "content": "hi"}], "custom_inputs": {"k": 1}},
    }


def test_the_templates_output_is_read_with_tool_calls_and_results():
    state = {
        "id": "0b6c",
        "status": "completed",
        "output": {
            "output": [
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"name": "search", "args": {"q": "x"}}],
                },
                {"role": "tool", "name": "search", "content": "found"},
                {"role": "assistant", "content": "The answer."},
            ],
            "status": "completed",
        },
    }
    reply = AgentRuntimeAdapter().parse_reply(state)
    assert reply.text == "The answer."
    assert [item["kind"] for item in reply.items] == ["tool_call", "tool_result"]
    assert reply.items[0]["arguments"] == '{"q": "x"}'


def test_a_responses_body_and_a_plain_answer_are_read():
    responses = {
        "output": [
            {
                "type": "message",
                "id": "m1",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "From Responses."}],
            }
        ]
    }
    adapter = AgentRuntimeAdapter()
    assert (
        adapter.parse_reply({"status": "completed", "output": responses}).text == "From Responses."
    )
    assert (
        adapter.parse_reply({"status": "completed", "output": {"answer": "Hello"}}).text == "Hello"
    )


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"status": "failed", "error": "agent invocation failed"}, "agent invocation failed"),
        ({"status": "active"}, "'active'"),
        ({"status": "completed", "output": {"weird": 1}}, "no shape"),
        ({"status": "completed", "output": 7}, "not a JSON object"),
    ],
)
def test_what_cannot_be_read_is_refused_with_a_reason(state, message):
    with pytest.raises(AgentReplyError, match=message):
        AgentRuntimeAdapter().parse_reply(state)


def test_the_stream_shows_deltas_and_tool_items_and_knows_its_end():
    assembler = AgentRuntimeAdapter().assembler()
    events = []
    for chunk in [
        {"type": "run.started"},
        {"type": "delta", "content": "Hel", "id": "m"},
        {"type": "delta", "content": "lo", "id": "m"},
        {"type": "message", "message": {"role": "tool", "name": "t", "content": "r"}},
        {"type": "run.completed"},
    ]:
        events.extend(assembler.feed(chunk))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel", "lo"]
    assert [e.item["kind"] for e in events if isinstance(e, ItemAdded)] == ["tool_result"]
    assert assembler.finished
    assert assembler.reply().text == "Hello"
