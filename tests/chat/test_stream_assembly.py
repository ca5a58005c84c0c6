"""Stream assembly per agent schema (protocol.md §1.2-1.6, §2.3): real fixture streams, and
chunks produced with MLflow's own types; what the browser is sent must add up to the reply."""

import json
from dataclasses import asdict

import pytest
from mlflow.models.rag_signatures import ChainCompletionChunk, Message, StringResponse
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.agent import ChatAgentChunk, ChatAgentMessage
from mlflow.types.llm import (
    ChatChoiceDelta,
    ChatChunkChoice,
    ChatCompletionChunk,
    FunctionToolCallArguments,
    ToolCall,
)
from mlflow.types.responses import ResponsesAgentResponse, ResponsesAgentStreamEvent

from agents.schemas import (
    AgentReplyError,
    AgentStreamError,
    ItemAdded,
    TextDelta,
    adapter_for,
)
from tests.support import SHARED_FIXTURES

STREAMS = SHARED_FIXTURES / "streams"
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def load(name):
    return json.loads((STREAMS / name).read_text())


def assemble(schema, chunks):
    assembler = adapter_for(schema).assembler()
    events = [event for chunk in chunks for event in assembler.feed(chunk)]
    return assembler.reply(), events


def streamed_text(events):
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def added(events):
    return [event.item for event in events if isinstance(event, ItemAdded)]


def chat_agent_chunk(**delta):
    extra = {key: delta.pop(key) for key in ("finish_reason", "custom_outputs") if key in delta}
    return ChatAgentChunk(delta=ChatAgentMessage(**delta), **extra).model_dump(exclude_none=True)


def responses_event(**fields):
    return ResponsesAgentStreamEvent(**fields).model_dump(exclude_none=True)


# --- the real fixture streams -------------------------------------------------------------


@pytest.mark.parametrize("schema", ["chat_completions", "auto", "legacy_split"])
def test_chat_completion_stream_fixture(schema):
    chunks = load("chat_completions_chunks.json")
    reply, events = assemble(schema, chunks)
    expected = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert reply.text == expected == streamed_text(events)
    assert reply.text.startswith("Streaming works:")
    assert reply.trace == chunks[-1]["databricks_output"]["trace"]
    assert reply.databricks_request_id == chunks[-1]["databricks_output"]["databricks_request_id"]
    assert reply.schema == ("legacy_split" if schema == "legacy_split" else "chat_completions")
    assert reply.items == [] and added(events) == []


@pytest.mark.parametrize("schema", ["responses", "auto"])
def test_responses_stream_fixture(schema):
    chunks = load("responses_events.json")
    reply, events = assemble(schema, chunks)
    done_message = next(c["item"] for c in chunks if c.get("item", {}).get("type") == "message")
    deltas = "".join(c["delta"] for c in chunks if c["type"] == "response.output_text.delta")
    assert reply.text == done_message["content"][0]["text"] == deltas == streamed_text(events)
    carrier = next(c for c in chunks if "databricks_output" in c)
    assert reply.trace == carrier["databricks_output"]["trace"]
    assert reply.databricks_request_id == carrier["databricks_output"]["databricks_request_id"]
    assert reply.items == added(events)
    assert [item["kind"] for item in reply.items] == ["tool_call", "tool_result"]
    assert reply.items[1]["name"] == reply.items[0]["name"] == "lookup_order"
    assert reply.schema == "responses"


def test_a_partial_stream_gives_the_answer_so_far():
    chunks = load("chat_completions_chunks.json")
    assembler = adapter_for("chat_completions").assembler()
    for chunk in chunks[:2]:
        assembler.feed(chunk)
    assert assembler.reply().text == "Streaming works:"
    assert assembler.reply().trace is None


def test_the_last_non_empty_trace_wins():
    chunks = load("chat_completions_chunks.json")
    first, last = chunks[-1]["databricks_output"], {"trace": {"info": {"trace_id": "tr-2"}}}
    reply, _ = assemble("chat_completions", [*chunks, {"databricks_output": last}, {"x": 1}])
    assert reply.trace == last["trace"]
    assert reply.databricks_request_id == first["databricks_request_id"]
    reply, _ = assemble("chat_completions", [*chunks, {"databricks_output": {"trace": {}}}])
    assert reply.trace == first["trace"]


# --- chat completions with tool calls -----------------------------------------------------


def test_whole_tool_calls_from_mlflow_chunks_are_announced_at_finish():
    call = ToolCall(id="call_1", function=FunctionToolCallArguments(name="f", arguments="{}"))
    chunks = [
        ChatCompletionChunk(
            choices=[ChatChunkChoice(delta=ChatChoiceDelta(role="assistant", tool_calls=[call]))]
        ).to_dict(),
        ChatCompletionChunk(
            choices=[ChatChunkChoice(delta=ChatChoiceDelta(), finish_reason="tool_calls")],
            custom_outputs={"x": 1},
        ).to_dict(),
    ]
    assembler = adapter_for("chat_completions").assembler()
    assert assembler.feed(chunks[0]) == []
    item = {"kind": "tool_call", "id": "call_1", "name": "f", "arguments": "{}"}
    assert assembler.feed(chunks[1]) == [ItemAdded(item)]
    assert assembler.reply().items == [item]
    assert assembler.reply().custom_outputs == {"x": 1}


def test_openai_tool_call_fragments_are_joined_by_index():
    # OpenAI-compatible servers (vLLM) split one call over chunks keyed by `index`; MLflow's
    # types only carry whole calls, so this OpenAI wire shape is written out here.
    fragments = [
        {
            "index": 0,
            "id": "call_9",
            "type": "function",
            "function": {"name": "get", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"city": '}},
        {"index": 0, "function": {"arguments": '"Lisbon"}'}},
    ]
    chunks = [{"choices": [{"index": 0, "delta": {"tool_calls": [f]}}]} for f in fragments]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    reply, events = assemble("chat_completions", chunks)
    item = {"kind": "tool_call", "id": "call_9", "name": "get", "arguments": '{"city": "Lisbon"}'}
    assert reply.items == added(events) == [item]


# --- ChatAgent ---------------------------------------------------------------------------


def test_chat_agent_stream_aggregates_by_message_id():
    chunks = [
        chat_agent_chunk(role="assistant", id="m1", tool_calls=[TOOL_CALL]),
        chat_agent_chunk(role="tool", id="m2", content="42", name="f", tool_call_id="call_1"),
        chat_agent_chunk(role="assistant", id="m3", content="It is"),
        chat_agent_chunk(role="assistant", id="m3", content=" 42."),
        chat_agent_chunk(role="assistant", id="m4", content="Anything else?"),
        chat_agent_chunk(
            role="assistant", id="m4", content="", finish_reason="stop", custom_outputs={"x": 1}
        ),
    ]
    assembler = adapter_for("chat_agent").assembler()
    per_chunk = [assembler.feed(chunk) for chunk in chunks]
    call = {"kind": "tool_call", "id": "call_1", "name": "f", "arguments": "{}"}
    result = {"kind": "tool_result", "call_id": "call_1", "name": "f", "output": "42"}
    # A message's items are announced when the next message starts.
    assert per_chunk[:3] == [[], [ItemAdded(call)], [ItemAdded(result), TextDelta("It is")]]
    assert per_chunk[4] == [TextDelta("\n\nAnything else?")]
    reply = assembler.reply()
    events = [event for chunk_events in per_chunk for event in chunk_events]
    assert reply.text == "It is 42.\n\nAnything else?" == streamed_text(events)
    assert reply.items == [call, result]
    assert (reply.custom_outputs, reply.schema) == ({"x": 1}, "chat_agent")


def test_chat_agent_stream_through_auto():
    chunks = [
        chat_agent_chunk(role="assistant", id="m1", content="Hel"),
        chat_agent_chunk(role="assistant", id="m1", content="lo"),
    ]
    reply, events = assemble("auto", chunks)
    assert (reply.text, reply.schema, streamed_text(events)) == ("Hello", "chat_agent", "Hello")


def test_a_tool_message_still_open_at_the_end_is_in_the_reply():
    chunks = [chat_agent_chunk(role="tool", id="m1", content="x", name="f", tool_call_id="c")]
    reply, events = assemble("chat_agent", chunks)
    assert added(events) == []
    assert reply.items == [{"kind": "tool_result", "call_id": "c", "name": "f", "output": "x"}]


# --- Responses ---------------------------------------------------------------------------


def test_responses_items_done_without_deltas_and_completed():
    reasoning = ResponsesAgent.create_reasoning_item("r1", "Think first.")
    first = ResponsesAgent.create_text_output_item("First.", "msg_1")
    second = ResponsesAgent.create_text_output_item("Second.", "msg_2")
    completed = ResponsesAgentResponse(output=[reasoning, first, second], custom_outputs={"x": 1})
    chunks = [
        responses_event(type="response.created", response={"id": "resp_1"}),
        responses_event(type="response.output_item.done", item=reasoning),
        responses_event(type="response.output_item.done", item=first),
        responses_event(**ResponsesAgent.create_text_delta("Sec", "msg_2")),
        responses_event(type="response.completed", response=completed.model_dump()),
    ]
    assembler = adapter_for("responses").assembler()
    per_chunk = [assembler.feed(chunk) for chunk in chunks]
    assert per_chunk[0] == []
    assert per_chunk[1] == [ItemAdded({"kind": "reasoning", "text": "Think first."})]
    assert per_chunk[2] == [TextDelta("First.")]
    assert per_chunk[3] == [TextDelta("\n\nSec")]
    assert per_chunk[4] == []  # nothing new: the final output replaces what streamed
    reply = assembler.reply()
    assert reply.text == "First.\n\nSecond."
    assert reply.items == [{"kind": "reasoning", "text": "Think first."}]
    assert reply.custom_outputs == {"x": 1}


def test_responses_completed_alone_carries_the_answer():
    completed = ResponsesAgentResponse(
        output=[ResponsesAgent.create_text_output_item("Only here.", "msg_1")]
    )
    event = responses_event(type="response.completed", response=completed.model_dump())
    reply, events = assemble("auto", [event])
    assert reply.text == "Only here." == streamed_text(events)


def test_responses_error_event_raises_with_the_agents_message():
    assembler = adapter_for("responses").assembler()
    assembler.feed(responses_event(**ResponsesAgent.create_text_delta("Hal", "m")))
    with pytest.raises(AgentStreamError) as caught:
        assembler.feed(responses_event(type="error", message="x" * 600, code="500"))
    assert str(caught.value) == "x" * 500
    assert assembler.reply().text == "Hal"


def test_responses_failed_event_raises():
    event = {"type": "response.failed", "response": {"error": {"message": "model overloaded"}}}
    with pytest.raises(AgentStreamError, match=r"^model overloaded$"):
        assemble("responses", [event])


# --- legacy -------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*rag_signatures.*is deprecated:FutureWarning")
def test_legacy_chain_chunks_and_content_pieces():
    chunks = [
        asdict(ChainCompletionChunk(delta=Message(role="assistant", content="Use "))),
        asdict(StringResponse(content="df.toPandas().")),
    ]
    for schema in ("legacy_split", "auto"):
        reply, events = assemble(schema, chunks)
        assert reply.text == "Use df.toPandas()." == streamed_text(events)
        assert reply.schema == "legacy_split"


# --- AgentServer envelope ----------------------------------------------------------------
# The two events MLflow's AgentServer writes itself (mlflow/genai/agent_server/server.py
# `_generate`): json.dumps({'trace_id': span.trace_id}) and json.dumps({'error': str(e)}).


@pytest.mark.parametrize("schema", ["responses", "auto"])
def test_agent_server_trace_id_event(schema):
    chunks = [*load("responses_events.json"), {"trace_id": "tr-0123456789abcdef"}]
    reply, _ = assemble(schema, chunks)
    assert reply.trace_id == "tr-0123456789abcdef"
    assert reply.text.startswith("The order ORD-1042")


def test_envelope_chunks_before_the_shape_is_known_are_kept_by_auto():
    chunks = [{"trace_id": "tr-1"}, *load("chat_completions_chunks.json")[:1]]
    reply, _ = assemble("auto", chunks)
    assert (reply.trace_id, reply.text, reply.schema) == ("tr-1", "Streaming", "chat_completions")
    reply, _ = assemble("auto", [{"trace_id": "tr-1"}])
    assert (reply.trace_id, reply.text, reply.schema) == ("tr-1", "", "auto")


@pytest.mark.parametrize("schema", ["chat_completions", "chat_agent", "responses", "auto"])
@pytest.mark.parametrize("error", ["boom: agent crashed", {"message": "boom: agent crashed"}])
def test_agent_server_error_event(schema, error):
    with pytest.raises(AgentStreamError, match=r"^boom: agent crashed$"):
        assemble(schema, [{"error": error}])


# --- garbage ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "chunk", "message"),
    [
        ("chat_completions", "data", "not a JSON object"),
        ("auto", ["x"], "not a JSON object"),
        ("chat_completions", {"choices": "x"}, "no `choices` list"),
        ("chat_completions", {"choices": [{"delta": "x"}]}, "not a JSON object"),
        ("chat_completions", {"choices": [{"delta": {"content": 5}}]}, "neither text"),
        ("chat_completions", {"choices": [{"delta": {"tool_calls": {}}}]}, "not a list"),
        ("chat_agent", {"delta": {"id": "m", "content": "x"}}, "no `role`"),
        ("chat_agent", {"delta": {"role": "assistant", "id": 3}}, "not a string"),
        ("responses", {"type": "response.output_text.delta", "item_id": "m"}, "`delta` string"),
        ("responses", {"type": "response.output_item.done", "item": "x"}, "not a JSON object"),
        ("responses", {"type": 7}, "not a string"),
        ("legacy_split", {"delta": {"content": ["x"]}}, "neither text"),
        ("auto", {"trace_id": 5}, "not a string"),
    ],
)
def test_garbage_chunks_are_a_clear_error(schema, chunk, message):
    with pytest.raises(AgentReplyError, match=message):
        adapter_for(schema).assembler().feed(chunk)


@pytest.mark.parametrize(
    ("schema", "chunk"),
    [
        ("chat_completions", {"choices": [], "usage": {"total_tokens": 3}}),
        ("chat_completions", {"choices": [{"delta": {"role": "assistant"}}]}),
        ("responses", {"type": "response.in_progress"}),
        ("auto", {"object": "ping"}),
    ],
)
def test_irrelevant_chunks_are_ignored(schema, chunk):
    assembler = adapter_for(schema).assembler()
    assert assembler.feed(chunk) == []
    assert assembler.reply().text == ""
