"""The four agent schemas, chosen by the endpoint's name: tasks, replies, traces, bad requests."""

import json

import httpx
import pytest
from mlflow.entities import SpanType, Trace
from mlflow.tracing.constant import TraceMetadataKey
from mlflow.types.agent import ChatAgentResponse
from mlflow.types.llm import ChatCompletionResponse
from mlflow.types.responses import ResponsesAgentResponse

from tests.demo_agent.helpers import QUESTION, invoke, turn_body
from tests.support.demo_agent import SCHEMA_ENDPOINTS

SCHEMAS = list(SCHEMA_ENDPOINTS)


def post(agent, schema, body, **kwargs):
    return invoke(agent, body, endpoint=SCHEMA_ENDPOINTS[schema], **kwargs)


def answer_of(schema: str, reply: dict) -> str:
    if schema == "chat_completions":
        return reply["choices"][0]["message"]["content"]
    if schema == "chat_agent":
        return reply["messages"][-1]["content"]
    if schema == "responses":
        return reply["output"][-1]["content"][0]["text"]
    return reply["content"]


def traced(agent, schema, body):
    """(reply without databricks_output, its trace) of a turn that asked for the trace."""
    response = post(agent, schema, {**body, "databricks_options": {"return_trace": True}})
    assert response.status_code == 200, response.text
    reply = response.json()
    output = reply.pop("databricks_output")
    trace = Trace.from_dict(output["trace"])
    assert trace.info.client_request_id == output["databricks_request_id"]
    return reply, trace


def span_of(trace: Trace, span_type: str):
    (span,) = [s for s in trace.data.spans if s.span_type == span_type]
    return span


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("agents_main-demo-rag_agent", "agent/v1/chat"),
        ("my-responses-agent", "agent/v1/responses"),
        ("support-chat-agent", "agent/v2/chat"),
        ("support_chat_agent", "agent/v2/chat"),
        ("MyChatAgent", "agent/v2/chat"),
        ("legacy-chat-agent-responses", "agent/v1/responses"),  # `responses` is looked at first
        ("legacy-chat-agent", "agent/v2/chat"),
        ("rag-legacy", None),
    ],
)
def test_the_endpoint_name_picks_the_advertised_task(demo_agent, name, task):
    response = httpx.get(f"{demo_agent.url}/api/2.0/serving-endpoints/{name}", timeout=10)
    assert response.status_code == 200
    endpoint = response.json()
    assert endpoint["name"] == name
    if task is None:
        assert "task" not in endpoint
    else:
        assert endpoint["task"] == task


def test_every_schema_gives_the_same_answer_to_the_same_question(demo_agent):
    answers = {}
    for schema in SCHEMAS:
        response = post(demo_agent, schema, turn_body(schema))
        assert response.status_code == 200, (schema, response.text)
        assert response.json()["databricks_output"]["databricks_request_id"]
        answers[schema] = answer_of(schema, response.json())
    assert len(set(answers.values())) == 1, answers
    assert "feedback" in answers["legacy"].lower()


def test_chat_completions_replies_are_unchanged(demo_agent):
    reply, trace = traced(demo_agent, "chat_completions", turn_body("chat_completions"))
    ChatCompletionResponse.from_dict({k: v for k, v in reply.items() if k != "custom_outputs"})
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert span_of(trace, SpanType.AGENT).outputs == reply


def test_a_chat_agent_reply_shows_the_retrieval_as_a_tool_call(demo_agent):
    body = turn_body("chat_agent", custom_inputs={"top_k": 2})
    reply, trace = traced(demo_agent, "chat_agent", body)
    ChatAgentResponse.model_validate(reply)  # also checks that every message has a unique id
    call, tool, answer = reply["messages"]
    assert len({m["id"] for m in reply["messages"]}) == 3

    assert call["role"] == "assistant" and "content" not in call
    (tool_call,) = call["tool_calls"]
    assert tool_call["type"] == "function"
    assert tool_call["function"]["name"] == "search_docs"
    assert json.loads(tool_call["function"]["arguments"]) == {"query": QUESTION}

    assert tool["role"] == "tool"
    assert tool["name"] == "search_docs"
    assert tool["tool_call_id"] == tool_call["id"]
    sources = json.loads(tool["content"])
    chunk_ids = reply["custom_outputs"]["retrieved_chunk_ids"]
    assert [s["chunk_id"] for s in sources] == chunk_ids and len(chunk_ids) == 2
    assert all(s["doc_uri"] for s in sources)

    assert answer["role"] == "assistant" and answer["content"]
    assert reply["usage"]["total_tokens"] > 0
    # The same spans as every schema; the root span records this schema's request and reply.
    assert sorted(s.span_type for s in trace.data.spans) == ["AGENT", "CHAT_MODEL", "RETRIEVER"]
    root = span_of(trace, SpanType.AGENT)
    assert root.inputs == {**body, "databricks_options": {"return_trace": True}}
    assert root.outputs == reply
    assert [d["id"] for d in span_of(trace, SpanType.RETRIEVER).outputs] == chunk_ids


def test_a_responses_reply_has_reasoning_a_function_call_and_the_message(demo_agent):
    reply, trace = traced(demo_agent, "responses", turn_body("responses"))
    ResponsesAgentResponse.model_validate(reply)
    assert reply["object"] == "response"
    assert reply["id"].startswith("resp_")
    reasoning, call, call_output, message = reply["output"]
    assert [i["type"] for i in reply["output"]] == [
        "reasoning",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert reasoning["id"] and reasoning["summary"][0]["type"] == "summary_text"
    assert reasoning["summary"][0]["text"]
    assert call["name"] == "search_docs" and call["id"] and call["call_id"]
    assert json.loads(call["arguments"]) == {"query": QUESTION}
    assert call_output["call_id"] == call["call_id"]
    chunk_ids = [s["chunk_id"] for s in json.loads(call_output["output"])]
    assert chunk_ids == reply["custom_outputs"]["retrieved_chunk_ids"]
    assert message["role"] == "assistant" and message["id"]
    assert message["content"][0]["type"] == "output_text"
    assert reply["usage"]["total_tokens"] > 0
    assert span_of(trace, SpanType.AGENT).outputs == reply


def test_earlier_responses_output_items_are_accepted_and_ignored(demo_agent):
    first = post(demo_agent, "responses", turn_body("responses")).json()
    follow_up = "What is a cold start of a serving endpoint?"
    history = [*turn_body("responses")["input"], *first["output"]]
    question = {"role": "user", "content": [{"type": "input_text", "text": follow_up}]}
    reply, trace = traced(demo_agent, "responses", {"input": [*history, question]})
    assert reply["custom_outputs"]["retrieved_chunk_ids"][0] == "serving-003"
    # The LLM saw the conversation's messages; the tool items of the first turn were dropped.
    llm_messages = span_of(trace, SpanType.CHAT_MODEL).inputs["messages"]
    assert llm_messages[1:] == [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": first["output"][-1]["content"][0]["text"]},
        {"role": "user", "content": follow_up},
    ]


def test_a_legacy_reply_is_only_the_content(demo_agent):
    history = [
        {"role": "user", "content": "What is a cold start?"},
        {"role": "assistant", "content": "The first request waits while the model loads."},
    ]
    body = {"query": QUESTION, "history": history}
    reply, trace = traced(demo_agent, "legacy", body)
    assert list(reply) == ["content"]
    assert reply["content"]
    assert span_of(trace, SpanType.AGENT).inputs == {
        **body,
        "databricks_options": {"return_trace": True},
    }
    llm_messages = span_of(trace, SpanType.CHAT_MODEL).inputs["messages"]
    assert llm_messages[1:] == [*history, {"role": "user", "content": QUESTION}]


@pytest.mark.parametrize("schema", ["chat_agent", "responses"])
def test_the_context_conversation_and_user_are_recorded_on_the_trace(demo_agent, schema):
    context = {"conversation_id": "conv-7", "user_id": "rita@example.com"}
    _, trace = traced(demo_agent, schema, turn_body(schema, context=context))
    assert trace.info.trace_metadata[TraceMetadataKey.TRACE_SESSION] == "conv-7"
    assert trace.info.trace_metadata[TraceMetadataKey.TRACE_USER] == "rita@example.com"
    # databricks_options.conversation_id, when given too, wins.
    body = turn_body(schema, context=context)
    body["databricks_options"] = {"return_trace": True, "conversation_id": "conv-8"}
    trace = Trace.from_dict(post(demo_agent, schema, body).json()["databricks_output"]["trace"])
    assert trace.info.trace_metadata[TraceMetadataKey.TRACE_SESSION] == "conv-8"


@pytest.mark.parametrize("schema", SCHEMAS)
def test_custom_inputs_and_simulate_hooks_work_in_every_schema(demo_agent, schema):
    _, trace = traced(demo_agent, schema, turn_body(schema, custom_inputs={"top_k": 1}))
    assert len(span_of(trace, SpanType.RETRIEVER).outputs) == 1
    failed = post(
        demo_agent, schema, turn_body(schema, custom_inputs={"simulate": {"status": 429}})
    )
    assert failed.status_code == 429
    assert failed.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    refused = post(demo_agent, schema, turn_body(schema, custom_inputs={"top_k": "1"}))
    assert refused.status_code == 400


USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("schema", "body", "complaint"),
    [
        ("chat_agent", {"input": [USER]}, "`messages`"),
        ("chat_agent", {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}, "string"),
        ("chat_agent", {"messages": [USER, {"role": "tool", "content": "x"}]}, "tool_call_id"),
        ("chat_agent", {"messages": [USER], "context": "conv-1"}, "`context`"),
        ("chat_agent", {"messages": [USER], "context": {"conversation_id": 5}}, "conversation_id"),
        ("chat_agent", {"messages": [USER], "stream": "yes"}, "`stream`"),
        ("responses", {"messages": [USER]}, "`input`"),
        ("responses", {"input": "hi"}, "`input`"),
        ("responses", {"input": []}, "`input`"),
        ("responses", {"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
        ("responses", {"input": [{**USER, "type": "mesage"}]}, "input[0].type"),
        ("responses", {"input": [{"role": "user", "content": 5}]}, "input[0].content"),
        ("responses", {"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "text"),
        ("responses", {"input": [{"role": "assistant", "content": "hi"}]}, "role `user`"),
        ("responses", {"input": [USER], "context": []}, "`context`"),
        ("legacy", {"messages": [USER]}, "`query`"),
        ("legacy", {"query": " "}, "`query`"),
        ("legacy", {"query": 5}, "`query`"),
        ("legacy", {"query": "q", "history": "earlier"}, "`history`"),
        ("legacy", {"query": "q", "history": [{"role": "robot", "content": "x"}]}, "history[0]"),
        ("legacy", {"query": "q", "history": [{"role": "user", "content": ["x"]}]}, "history[0]"),
        ("legacy", {"query": "q", "databricks_options": {"return_trace": 1}}, "return_trace"),
        ("chat_completions", {"input": [USER]}, "`messages`"),
    ],
)
def test_bad_requests_are_refused_in_the_schemas_terms(demo_agent, schema, body, complaint):
    response = post(demo_agent, schema, body)
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert complaint in response.json()["message"]
