"""Request bodies, non-streamed replies and schema detection per agent schema (protocol.md §1-2).

Replies are the real fixtures or are produced with MLflow's own types, never typed by hand.
"""

import json

import pytest
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.agent import ChatAgentMessage, ChatAgentResponse
from mlflow.types.llm import (
    ChatChoice,
    ChatCompletionResponse,
    ChatMessage,
    FunctionToolCallArguments,
    ToolCall,
)
from mlflow.types.responses import ResponsesAgentResponse

from agents.models import AgentSchema
from agents.schemas import (
    AgentReplyError,
    adapter_for,
    detect_schema,
    schema_for_task,
)
from tests.support import SHARED_FIXTURES

HISTORY = [
    {"role": "user", "content": "What is Spark?"},
    {"role": "assistant", "content": "Spark is a data processing engine."},
    {"role": "user", "content": "How do I convert a Spark DataFrame to Pandas?"},
]
REPLY_FIXTURES = [
    SHARED_FIXTURES / "traces" / f"{name}.response.json"
    for name in ("rag_simple", "tool_calling", "error_span", "v2/rag_simple")
]


def build(schema, **overrides):
    arguments = {
        "messages": HISTORY,
        "custom_inputs": {},
        "conversation_id": "c-1",
        "user_id": "u-1",
        "stream": False,
        "databricks_options": False,
    }
    return adapter_for(schema).build_request(**(arguments | overrides))


def chat_agent_body(*messages, **fields):
    return ChatAgentResponse(messages=list(messages), **fields).model_dump(exclude_none=True)


def responses_body(*output, **fields):
    return ResponsesAgentResponse(output=list(output), **fields).model_dump(exclude_none=True)


# --- requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ("chat_completions", {"messages": HISTORY}),
        ("auto", {"messages": HISTORY}),
        (
            "chat_agent",
            {"messages": HISTORY, "context": {"conversation_id": "c-1", "user_id": "u-1"}},
        ),
        (
            "responses",
            {
                "input": [{"type": "message", **message} for message in HISTORY],
                "context": {"conversation_id": "c-1", "user_id": "u-1"},
            },
        ),
        ("legacy_split", {"query": HISTORY[-1]["content"], "history": HISTORY[:2]}),
    ],
)
def test_plain_request_per_schema(schema, expected):
    assert build(schema) == expected


@pytest.mark.parametrize("schema", ["chat_completions", "chat_agent", "responses", "legacy_split"])
def test_options_stream_model_and_inputs_are_added_only_when_asked(schema):
    plain = build(schema)
    full = build(
        schema, custom_inputs={"k": 1}, stream=True, databricks_options=True, model="llama"
    )
    assert full == plain | {
        "custom_inputs": {"k": 1},
        "databricks_options": {"return_trace": True, "conversation_id": "c-1"},
        "stream": True,
        "model": "llama",
    }
    assert not {"custom_inputs", "databricks_options", "stream", "model"} & set(plain)


def test_request_bodies_validate_with_mlflow_request_types():
    from mlflow.types.agent import ChatAgentRequest
    from mlflow.types.responses import ResponsesAgentRequest

    ChatAgentRequest(**build("chat_agent", custom_inputs={"k": 1}, stream=True))
    ResponsesAgentRequest(**build("responses", custom_inputs={"k": 1}, stream=True))


def test_request_copies_only_role_and_content():
    messages = [{"role": "user", "content": "hi", "id": 7}]
    body = build("chat_completions", messages=messages)
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["messages"][0] is not messages[0]


@pytest.mark.parametrize(
    "messages", [[], [{"role": "robot", "content": "x"}], [{"role": "user", "content": 3}]]
)
def test_malformed_conversation_is_refused(messages):
    with pytest.raises(ValueError, match="message"):
        build("chat_completions", messages=messages)


def test_legacy_request_needs_the_user_message_last():
    with pytest.raises(ValueError, match="user's message"):
        build("legacy_split", messages=HISTORY[:2])


# --- non-streamed replies ---------------------------------------------------------------


@pytest.mark.parametrize("path", REPLY_FIXTURES, ids=lambda path: path.stem)
@pytest.mark.parametrize("schema", ["chat_completions", "auto", "legacy_split"])
def test_real_replies_parse_with_their_trace(path, schema):
    body = json.loads(path.read_text())
    reply = adapter_for(schema).parse_reply(body)
    assert reply.text == body["choices"][0]["message"]["content"]
    assert reply.databricks_request_id == body["databricks_output"]["databricks_request_id"]
    assert reply.trace == body["databricks_output"]["trace"]
    assert reply.schema == "chat_completions"
    assert reply.items == []


def test_chat_completion_tool_calls_and_custom_outputs():
    call = ToolCall(id="call_1", function=FunctionToolCallArguments(name="f", arguments="{}"))
    body = ChatCompletionResponse(
        choices=[ChatChoice(message=ChatMessage(role="assistant", tool_calls=[call]))],
        custom_outputs={"x": 1},
    ).to_dict()
    reply = adapter_for("chat_completions").parse_reply(body)
    assert reply.text == ""
    assert reply.items == [{"kind": "tool_call", "id": "call_1", "name": "f", "arguments": "{}"}]
    assert reply.custom_outputs == {"x": 1}
    assert reply.trace is None and reply.databricks_request_id is None


def test_content_parts_are_joined():
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    body = ChatCompletionResponse(
        choices=[ChatChoice(message=ChatMessage(role="assistant", content=parts))]
    ).to_dict()
    assert adapter_for("chat_completions").parse_reply(body).text == "ab"


def test_chat_agent_reply_with_tools_and_two_answers():
    body = chat_agent_body(
        ChatAgentMessage(role="assistant", content="Looking it up.", id="m1"),
        ChatAgentMessage(
            role="assistant",
            id="m2",
            tool_calls=[
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        ),
        ChatAgentMessage(role="tool", content="42", name="f", tool_call_id="call_1", id="m3"),
        ChatAgentMessage(role="assistant", content="It is **42**.", id="m4"),
        custom_outputs={"x": 1},
    )
    reply = adapter_for("chat_agent").parse_reply(body)
    assert reply.text == "Looking it up.\n\nIt is **42**."
    assert reply.items == [
        {"kind": "tool_call", "id": "call_1", "name": "f", "arguments": "{}"},
        {"kind": "tool_result", "call_id": "call_1", "name": "f", "output": "42"},
    ]
    assert (reply.custom_outputs, reply.schema) == ({"x": 1}, "chat_agent")


def test_responses_reply_with_reasoning_tools_refusal_and_trace_id():
    body = responses_body(
        ResponsesAgent.create_reasoning_item("r1", "Need the order."),
        ResponsesAgent.create_function_call_item("fc1", "call_1", "lookup", '{"id": 1}'),
        ResponsesAgent.create_function_call_output_item("call_1", "shipped"),
        ResponsesAgent.create_text_output_item("It shipped.", "msg_1"),
        {
            "type": "message",
            "id": "msg_2",
            "role": "assistant",
            "content": [{"type": "refusal", "refusal": "No more details."}],
        },
        custom_outputs={"x": 1},
        # What MLflow's AgentServer adds with x-mlflow-return-trace-id (protocol.md §1.6).
        metadata={"trace_id": "tr-abc"},
    )
    reply = adapter_for("responses").parse_reply(body)
    assert reply.text == "It shipped.\n\nNo more details."
    assert reply.items == [
        {"kind": "reasoning", "text": "Need the order."},
        {"kind": "tool_call", "id": "call_1", "name": "lookup", "arguments": '{"id": 1}'},
        {"kind": "tool_result", "call_id": "call_1", "name": "lookup", "output": "shipped"},
    ]
    assert (reply.custom_outputs, reply.trace_id, reply.schema) == ({"x": 1}, "tr-abc", "responses")


def test_structured_tool_output_is_shown_as_json():
    body = responses_body(ResponsesAgent.create_function_call_output_item("c", "x"))
    body["output"][0]["output"] = {"status": "ok"}
    assert adapter_for("responses").parse_reply(body).items[0]["output"] == '{"status": "ok"}'


def test_legacy_reply():
    reply = adapter_for("legacy_split").parse_reply({"content": "Use df.toPandas()."})
    assert (reply.text, reply.schema) == ("Use df.toPandas().", "legacy_split")


# --- detection --------------------------------------------------------------------------


def test_auto_reads_every_known_shape_and_says_which():
    shapes = {
        "chat_completions": json.loads(REPLY_FIXTURES[0].read_text()),
        "chat_agent": chat_agent_body(ChatAgentMessage(role="assistant", content="A", id="m")),
        "responses": responses_body(ResponsesAgent.create_text_output_item("A", "m")),
        "legacy_split": {"content": "A"},
    }
    for schema, body in shapes.items():
        assert detect_schema(body) == schema
        reply = adapter_for("auto").parse_reply(body)
        assert reply.schema == schema
        assert reply.text == (
            body["choices"][0]["message"]["content"] if "choices" in body else "A"
        )


@pytest.mark.parametrize("body", [None, [], "text", {}, {"answer": "x"}, {"content": 1}])
def test_unknown_shapes_are_not_detected(body):
    assert detect_schema(body) is None
    with pytest.raises(AgentReplyError, match=r"JSON object|no agent schema"):
        adapter_for("auto").parse_reply(body)


def test_schema_for_task():
    assert schema_for_task("agent/v1/chat") == "chat_completions"
    assert schema_for_task("agent/v2/chat") == "chat_agent"
    assert schema_for_task("agent/v1/responses") == "responses"
    assert schema_for_task("llm/v1/chat") == "chat_completions"
    assert schema_for_task("llm/v1/embeddings") is None
    assert schema_for_task(None) is None


def test_every_agent_schema_has_an_adapter():
    for schema in AgentSchema.values:
        assert adapter_for(schema).schema == schema
    with pytest.raises(AgentReplyError, match="Unknown agent schema 'grpc'"):
        adapter_for("grpc")


# --- garbage ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "body", "message"),
    [
        ("chat_completions", [], "not a JSON object"),
        ("chat_completions", "text", "not a JSON object"),
        ("chat_completions", {}, "no `choices`"),
        ("chat_completions", {"choices": []}, "empty"),
        ("chat_completions", {"choices": [{"nope": 1}]}, "no `message`"),
        ("chat_completions", {"choices": [{"message": {"content": 3}}]}, "neither text"),
        ("chat_completions", {"choices": [{"message": {"content": [{"image": 1}]}}]}, "neither"),
        ("chat_completions", {"choices": [{"message": {"tool_calls": "f"}}]}, "not a list"),
        ("chat_agent", {}, "no `messages`"),
        ("chat_agent", {"messages": ["hi"]}, "not a JSON object"),
        ("chat_agent", {"messages": [{"content": "hi"}]}, "no `role`"),
        ("chat_agent", {"messages": [{"role": "assistant", "content": {"a": 1}}]}, "neither"),
        ("responses", {"object": "response"}, "no `output`"),
        ("responses", {"output": [{"type": "message", "content": "hi"}]}, "`content` list"),
        ("responses", {"output": [{"content": []}]}, "no `type`"),
        ("responses", {"output": [{"type": "function_call", "name": 3}]}, "not a string"),
        ("legacy_split", {"content": 3}, "no `content` string"),
        ("legacy_split", {"answer": "x"}, "no `content` string"),
    ],
)
def test_garbage_is_a_clear_error(schema, body, message):
    with pytest.raises(AgentReplyError, match=message):
        adapter_for(schema).parse_reply(body)


@pytest.mark.parametrize("schema", ["auto", "chat_completions", "responses"])
@pytest.mark.parametrize("error", ["quota exceeded", {"message": "quota exceeded", "code": 429}])
def test_an_error_body_shows_the_agents_message(schema, error):
    with pytest.raises(AgentReplyError, match="reported an error: quota exceeded"):
        adapter_for(schema).parse_reply({"error": error})
