"""Chat turns against the demo agent: replies, MLflow traces, custom inputs, bad requests."""

import json
import uuid

import httpx
import pytest
from mlflow.entities import SpanType, Trace
from mlflow.tracing.constant import SpanAttributeKey, TraceMetadataKey

from tests.demo_agent.helpers import answer_text, chat_body, invoke
from tests.support import SHARED_FIXTURES

# Trace.to_dict() of an MLflow 3 RAG agent, made by MLflow (../shared/fixtures beside the repo).
FIXTURE_TRACE = SHARED_FIXTURES / "traces" / "rag_simple.json"


def traced_turn(agent, question=None, custom_inputs=None, headers=None):
    body = chat_body(**({} if question is None else {"question": question}))
    body["databricks_options"] = {"return_trace": True}
    if custom_inputs is not None:
        body["custom_inputs"] = custom_inputs
    response = invoke(agent, body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def children_of(trace: Trace, parent) -> dict[str, object]:
    """Child spans of `parent` by span type (each type appears once in the demo agent)."""
    return {s.span_type: s for s in trace.data.spans if s.parent_id == parent.span_id}


def test_return_trace_gives_the_mlflow_trace_of_the_agent_run(demo_agent):
    reply = traced_turn(demo_agent)
    output = reply["databricks_output"]
    trace = Trace.from_dict(output["trace"])

    assert trace.info.client_request_id == output["databricks_request_id"]
    assert trace.info.trace_id.startswith("tr-")
    assert trace.info.state.value == "OK"
    roots = [s for s in trace.data.spans if s.parent_id is None]
    assert len(roots) == 1
    root = roots[0]
    assert root.span_type == SpanType.AGENT
    assert root.inputs["messages"] == chat_body()["messages"]
    assert root.outputs["choices"] == reply["choices"]

    children = children_of(trace, root)
    retriever = children[SpanType.RETRIEVER]
    assert retriever.name == "retrieve_docs"
    assert len(retriever.outputs) == 3  # default top_k
    for document in retriever.outputs:
        assert document["page_content"]
        assert document["metadata"]["doc_uri"]
        assert document["metadata"]["chunk_id"] == document["id"]
    assert [d["id"] for d in retriever.outputs] == reply["custom_outputs"]["retrieved_chunk_ids"]

    llm = children[SpanType.CHAT_MODEL]
    usage = llm.get_attribute(SpanAttributeKey.CHAT_USAGE)
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert reply["usage"]["total_tokens"] == usage["total_tokens"]
    # The LLM saw the retrieved context in its system message.
    system = llm.inputs["messages"][0]
    assert system["role"] == "system"
    assert retriever.outputs[0]["page_content"] in system["content"]
    assert json.loads(trace.info.trace_metadata[TraceMetadataKey.TOKEN_USAGE]) == usage
    assert llm.start_time_ns >= retriever.end_time_ns  # retrieval happened first


def test_the_trace_has_the_shape_of_mlflow_3_serving_traces(demo_agent):
    fixture = json.loads(FIXTURE_TRACE.read_text())
    trace = traced_turn(demo_agent)["databricks_output"]["trace"]
    assert trace.keys() == fixture.keys()
    assert trace["data"].keys() == fixture["data"].keys()
    # Ours also has client_request_id, which the fixture (not made in serving) lacks.
    assert set(fixture["info"]) <= set(trace["info"])
    fixture_span_keys = {frozenset(span) for span in fixture["data"]["spans"]}
    assert {frozenset(span) for span in trace["data"]["spans"]} == fixture_span_keys
    span_types = [json.loads(s["attributes"]["mlflow.spanType"]) for s in trace["data"]["spans"]]
    assert sorted(span_types) == ["AGENT", "CHAT_MODEL", "RETRIEVER"]
    assert {s["status"]["code"] for s in trace["data"]["spans"]} == {"STATUS_CODE_OK"}


def test_the_callers_x_request_id_is_the_request_and_trace_id(demo_agent):
    request_id = f"review-app-{uuid.uuid4()}"
    response = invoke(
        demo_agent,
        chat_body(databricks_options={"return_trace": True}),
        headers={"X-Request-Id": request_id},
    )
    assert response.headers["x-request-id"] == request_id
    output = response.json()["databricks_output"]
    assert output["databricks_request_id"] == request_id
    assert output["trace"]["info"]["client_request_id"] == request_id


def test_without_return_trace_there_is_a_request_id_but_no_trace(demo_agent):
    ids = set()
    for options in (None, {"return_trace": False}):
        body = chat_body() if options is None else chat_body(databricks_options=options)
        reply = invoke(demo_agent, body).json()
        assert reply["object"] == "chat.completion"
        assert reply["choices"][0]["finish_reason"] == "stop"
        assert "trace" not in reply["databricks_output"]
        ids.add(str(uuid.UUID(reply["databricks_output"]["databricks_request_id"])))
    assert len(ids) == 2


def test_a_served_model_route_answers_like_the_endpoint(demo_agent):
    url = f"{demo_agent.url}/serving-endpoints/ep/served-models/ep_1/invocations"
    response = httpx.post(url, json=chat_body(custom_inputs={"top_k": 2}), timeout=30)
    assert response.status_code == 200
    assert len(response.json()["custom_outputs"]["retrieved_chunk_ids"]) == 2


def test_an_openai_client_given_the_endpoint_as_base_url_gets_the_turn(demo_agent):
    # OpenAI clients (LiteLLM's proxy in bench/proxy.py) append /chat/completions to their
    # base URL and send `model`; the endpoint's name still picks the schema.
    url = f"{demo_agent.url}/serving-endpoints/ep/chat/completions"
    body = chat_body(model="ep", databricks_options={"return_trace": True})
    response = httpx.post(url, json=body, timeout=30)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["object"] == "chat.completion"
    assert answer_text(response)
    assert reply["databricks_output"]["trace"]["info"]["trace_id"].startswith("tr-")


def test_the_conversation_id_is_recorded_as_the_trace_session(demo_agent):
    body = chat_body(databricks_options={"return_trace": True, "conversation_id": "conv-42"})
    trace = Trace.from_dict(invoke(demo_agent, body).json()["databricks_output"]["trace"])
    assert trace.info.trace_metadata[TraceMetadataKey.TRACE_SESSION] == "conv-42"


@pytest.mark.parametrize("top_k", [1, 5, 10])
def test_top_k_sets_how_many_documents_are_retrieved(demo_agent, top_k):
    reply = traced_turn(demo_agent, custom_inputs={"top_k": top_k})
    trace = Trace.from_dict(reply["databricks_output"]["trace"])
    (retriever,) = [s for s in trace.data.spans if s.span_type == SpanType.RETRIEVER]
    assert len(retriever.outputs) == top_k
    assert reply["custom_outputs"]["top_k"] == top_k
    assert len(reply["custom_outputs"]["retrieved_chunk_ids"]) == top_k


def test_style_changes_the_answer_and_is_echoed(demo_agent):
    answers = {}
    for style in ("concise", "detailed", "bullets"):
        response = invoke(demo_agent, chat_body(custom_inputs={"style": style}))
        assert response.json()["custom_outputs"]["style"] == style
        answers[style] = answer_text(response)
    assert len(set(answers.values())) == 3
    assert "\n" not in answers["concise"]
    assert len(answers["detailed"]) > 2 * len(answers["concise"])
    assert "Sources:" in answers["detailed"]
    assert all(line.startswith("- ") for line in answers["bullets"].splitlines())
    assert invoke(demo_agent).json()["custom_outputs"]["style"] == "concise"  # the default


def test_retrieval_follows_the_last_user_message(demo_agent):
    body = {
        "messages": [
            {"role": "user", "content": "What is a cold start of a serving endpoint?"},
            {"role": "assistant", "content": "The first request waits while the model loads."},
            {"role": "user", "content": [{"type": "text", "text": "How is feedback posted?"}]},
        ]
    }
    chunks = invoke(demo_agent, body).json()["custom_outputs"]["retrieved_chunk_ids"]
    assert chunks[0] == "review-app-002"
    first = invoke(demo_agent, chat_body("What is a cold start of a serving endpoint?"))
    assert first.json()["custom_outputs"]["retrieved_chunk_ids"][0] == "serving-003"
    assert "cold start" in answer_text(first)


@pytest.mark.parametrize(
    "custom_inputs",
    [
        "top_k=3",
        {"top_k": "3"},
        {"top_k": 0},
        {"top_k": 11},
        {"top_k": True},
        {"style": "loud"},
        {"style": None},
        {"simulate": {"status": 200}},
        {"simulate": {"malformed": "sometimes"}},
        {"simulate": {"delay_ms": -1}},
        {"simulate": {"explode": True}},
    ],
)
def test_bad_custom_inputs_are_refused(demo_agent, custom_inputs):
    response = invoke(demo_agent, chat_body(custom_inputs=custom_inputs))
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert response.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        [{"role": "user", "content": "hi"}],
        {},
        {"messages": []},
        {"messages": "hi"},
        {"messages": [{"role": "robot", "content": "hi"}]},
        {"messages": [{"role": "user", "content": 5}]},
        {"messages": [{"role": "assistant", "content": "no question asked"}]},
        {"query": "legacy shape without messages"},
        chat_body(databricks_options={"return_trace": "yes"}),
        chat_body(databricks_options=True),
    ],
)
def test_bad_bodies_are_refused(demo_agent, body):
    response = invoke(demo_agent, body)
    assert response.status_code == 400
    assert response.json()["error_code"] in {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}


@pytest.mark.parametrize("raw", [b"", b"not json", b'{"messages": [', b"\xff\xfe"])
def test_a_body_that_is_not_json_is_refused(demo_agent, raw):
    response = httpx.post(demo_agent.invocations_url(), content=raw, timeout=30)
    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST"


@pytest.mark.parametrize("stream", ["yes", 1])
def test_a_stream_flag_that_is_not_a_boolean_is_refused(demo_agent, stream):
    response = invoke(demo_agent, chat_body(stream=stream))
    assert response.status_code == 400
    assert "`stream` must be true or false" in response.json()["message"]


def test_unknown_routes_and_methods_answer_databricks_style(demo_agent):
    missing = httpx.get(f"{demo_agent.url}/serving-endpoints/ep/nothing-here", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    # A reachability probe GETs the invocations URL and expects 405 from a live endpoint.
    wrong_method = httpx.get(demo_agent.invocations_url(), timeout=10)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error_code"]


def test_the_endpoint_description_advertises_the_agent_and_feedback_entities(demo_agent):
    response = httpx.get(f"{demo_agent.url}/api/2.0/serving-endpoints/my-agent", timeout=10)
    assert response.status_code == 200
    endpoint = response.json()
    assert endpoint["name"] == "my-agent"
    assert endpoint["task"] == "agent/v1/chat"
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    names = [e["name"] for e in endpoint["config"]["served_entities"]]
    assert names == ["my-agent_1", "feedback"]
