"""Streamed turns in each schema: events, databricks_output, cuts, errors and pace."""

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from mlflow.entities import Trace
from mlflow.types.agent import ChatAgentChunk
from mlflow.types.llm import ChatCompletionChunk
from mlflow.types.responses import ResponsesAgentStreamEvent, responses_agent_output_reducer

from tests.demo_agent.helpers import invoke, stream_turn, turn_body
from tests.demo_agent.test_schemas import answer_of
from tests.support import SHARED_FIXTURES
from tests.support.demo_agent import SCHEMA_ENDPOINTS, run_demo_agent

SCHEMAS = list(SCHEMA_ENDPOINTS)
FIXTURE_STREAMS = SHARED_FIXTURES / "streams"


@pytest.fixture
def agent(demo_agent):
    demo_agent.configure(stream_chunk_delay_ms=0)  # pace is tested on its own below
    return demo_agent


def streamed(agent, schema, **extra):
    turn = stream_turn(agent, turn_body(schema, **extra), endpoint=SCHEMA_ENDPOINTS[schema])
    assert turn.status_code == 200, turn.body
    return turn


def without_output(event: dict) -> dict:
    return {k: v for k, v in event.items() if k != "databricks_output"}


def answer_pieces(schema: str, events: list[dict]) -> list[str]:
    """The pieces of answer text, in order, as a client of that schema would collect them; also
    from a stream that ended early."""
    if schema == "chat_completions":
        pieces = [e["choices"][0]["delta"].get("content") for e in events if "choices" in e]
    elif schema == "chat_agent":
        deltas = [e["delta"] for e in events if "delta" in e]
        pieces = [
            d["content"] for d in deltas if d["role"] == "assistant" and "tool_calls" not in d
        ]
    elif schema == "responses":
        pieces = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    else:
        pieces = [e["delta"]["content"] for e in events if "delta" in e]
    return [piece for piece in pieces if piece]


def unstreamed_answer(agent, schema: str) -> str:
    reply = invoke(agent, turn_body(schema), endpoint=SCHEMA_ENDPOINTS[schema]).json()
    return answer_of(schema, reply)


def check_with_mlflow_types(schema: str, events: list[dict]) -> None:
    """Every event parses as MLflow's own chunk type for the schema."""
    for event in map(without_output, events):
        if schema == "chat_completions":
            ChatCompletionChunk.from_dict(event)
        elif schema == "chat_agent":
            ChatAgentChunk.model_validate(event)
        elif schema == "responses":
            ResponsesAgentStreamEvent.model_validate(event)
        else:  # ChainCompletionChunk (rag_signatures), a plain dataclass
            assert event.keys() == {"index", "delta", "finish_reason"}
            assert event["delta"]["role"] == "assistant"
            assert isinstance(event["delta"]["content"], str)


@pytest.mark.parametrize("schema", SCHEMAS)
def test_each_schema_streams_word_by_word_the_answer_it_gives_unstreamed(agent, schema):
    plain = unstreamed_answer(agent, schema)
    turn = streamed(agent, schema)
    assert turn.headers["content-type"].startswith("text/event-stream")
    assert turn.done and turn.error is None
    check_with_mlflow_types(schema, turn.events)
    pieces = answer_pieces(schema, turn.events)
    assert "".join(pieces) == plain
    assert len(pieces) == len(plain.split()) > 10
    first = turn.events[0]["databricks_output"]
    assert first == {"databricks_request_id": turn.headers["x-request-id"]}
    # Without return_trace nothing but the first event carries databricks_output.
    assert all("databricks_output" not in e for e in turn.events[1:])


@pytest.mark.parametrize("schema", SCHEMAS)
def test_the_request_id_comes_first_and_the_trace_last(agent, schema):
    turn = streamed(agent, schema, databricks_options={"return_trace": True})
    request_id = turn.headers["x-request-id"]
    assert turn.events[0]["databricks_output"] == {"databricks_request_id": request_id}
    last = turn.events[-1]["databricks_output"]
    assert last.keys() == {"databricks_request_id", "trace"}
    assert last["databricks_request_id"] == request_id
    assert all("databricks_output" not in e for e in turn.events[1:-1])
    trace = Trace.from_dict(last["trace"])
    assert trace.info.client_request_id == request_id
    assert trace.info.state.value == "OK"
    assert sorted(s.span_type for s in trace.data.spans) == ["AGENT", "CHAT_MODEL", "RETRIEVER"]


def test_chat_completions_chunks_look_like_the_mlflow_fixture(agent):
    fixture = json.loads((FIXTURE_STREAMS / "chat_completions_chunks.json").read_text())
    events = streamed(agent, "chat_completions").events
    role, *contents, final = events
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {frozenset(without_output(e)) for e in contents} == {frozenset(fixture[0])}
    assert all(e["choices"][0]["delta"]["role"] == "assistant" for e in contents)
    assert final["choices"][0]["delta"] == {"role": "assistant"}
    assert final["choices"][0]["finish_reason"] == "stop"
    assert set(without_output(fixture[-1])) <= set(final)
    assert final["usage"]["total_tokens"] > 0
    assert final["custom_outputs"]["style"] == "concise"
    assert len({e["id"] for e in events}) == 1
    assert {e["object"] for e in events} == {"chat.completion.chunk"}


def test_chat_agent_chunks_carry_the_tool_call_whole_and_the_answer_under_one_id(agent):
    events = streamed(agent, "chat_agent").events
    call, tool = events[0]["delta"], events[1]["delta"]
    assert call["tool_calls"][0]["function"]["name"] == "search_docs"
    assert tool["role"] == "tool" and tool["tool_call_id"] == call["tool_calls"][0]["id"]
    answer_ids = {e["delta"]["id"] for e in events[2:]}
    assert len(answer_ids) == 1
    assert answer_ids.isdisjoint({call["id"], tool["id"]})
    final = events[-1]
    assert final["finish_reason"] == "stop"
    assert final["custom_outputs"]["retrieved_chunk_ids"]
    assert all("finish_reason" not in e for e in events[:-1])


def test_responses_events_look_like_the_mlflow_fixture_and_reduce_to_the_reply(agent):
    fixture = json.loads((FIXTURE_STREAMS / "responses_events.json").read_text())
    fixture_keys = {e["type"]: frozenset(without_output(e)) for e in fixture}
    events = streamed(agent, "responses").events
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert [e["item"]["type"] for e in done] == [
        "reasoning",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert events[:3] == done[:3] and events[-1] is not done[2]
    message = done[-1]["item"]
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert {e["item_id"] for e in deltas} == {message["id"]}
    assert frozenset(deltas[0]) == fixture_keys["response.output_text.delta"]
    assert message["content"][0]["text"] == "".join(e["delta"] for e in deltas)
    assert done[-1]["custom_outputs"]["top_k"] == 3
    # What MLflow's own stream reducer makes of the events is the unstreamed reply's output.
    reduced = responses_agent_output_reducer([without_output(e) for e in events])
    assert [i["type"] for i in reduced["output"]] == [i["item"]["type"] for i in done]


def test_legacy_chunks_end_with_a_stop(agent):
    events = streamed(agent, "legacy").events
    assert all(e["finish_reason"] is None for e in events[:-1])
    assert events[-1]["finish_reason"] == "stop"
    assert events[-1]["delta"]["content"] == ""


@pytest.mark.parametrize("schema", ["chat_completions", "responses"])
@pytest.mark.parametrize("cut_after", [0, 3])
def test_a_cut_stream_drops_the_connection_without_done(agent, schema, cut_after):
    simulate = {"cut_after_chunks": cut_after}
    turn = streamed(agent, schema, custom_inputs={"simulate": simulate})
    assert len(turn.events) == cut_after
    assert not turn.done
    # A chunked body that never ends: httpx cannot tell it from a crashed server.
    assert isinstance(turn.error, httpx.RemoteProtocolError), turn.error
    assert "incomplete" in str(turn.error)
    assert invoke(agent).status_code == 200  # the agent itself is fine
    assert "Traceback" not in agent.stderr()  # a cut that was asked for is not logged


def test_a_cut_after_every_event_still_withholds_done(agent):
    custom_inputs = {"simulate": {"cut_after_chunks": 10_000}}
    options = {"return_trace": True}
    turn = streamed(agent, "chat_agent", custom_inputs=custom_inputs, databricks_options=options)
    assert turn.events[-1]["finish_reason"] == "stop"
    assert "trace" in turn.events[-1]["databricks_output"]
    assert not turn.done
    assert isinstance(turn.error, httpx.RemoteProtocolError)


@pytest.mark.parametrize("schema", SCHEMAS)
def test_a_stream_error_comes_after_a_few_words_and_before_done(agent, schema):
    custom_inputs = {"simulate": {"stream_error": "The model fell over."}}
    options = {"return_trace": True}
    turn = streamed(agent, schema, custom_inputs=custom_inputs, databricks_options=options)
    assert turn.done and turn.error is None
    *before, error = turn.events
    if schema == "responses":
        assert error == {"type": "error", "message": "The model fell over."}
        ResponsesAgentStreamEvent.model_validate(error)
    else:
        assert error == {"error": {"message": "The model fell over."}}
    check_with_mlflow_types(schema, before)
    # Some of the answer got out (so a client has partial text to show), but not its end.
    pieces = answer_pieces(schema, before)
    assert len(pieces) == 3
    assert unstreamed_answer(agent, schema).startswith("".join(pieces))
    assert all("trace" not in e.get("databricks_output", {}) for e in before)


def test_the_chunk_delay_knob_paces_the_events_and_a_turn_can_override_it(demo_agent):
    demo_agent.configure(stream_chunk_delay_ms=50)
    paced = streamed(demo_agent, "legacy")
    gaps = len(paced.events) - 1
    assert paced.arrival_s[-1] - paced.arrival_s[0] >= 0.05 * gaps * 0.9
    quick = streamed(demo_agent, "legacy", custom_inputs={"simulate": {"chunk_delay_ms": 0}})
    assert quick.arrival_s[-1] - quick.arrival_s[0] < 0.05 * gaps / 2
    demo_agent.configure(stream_chunk_delay_ms=0)
    slow = streamed(demo_agent, "legacy", custom_inputs={"simulate": {"chunk_delay_ms": 80}})
    assert slow.arrival_s[-1] - slow.arrival_s[0] >= 0.08 * gaps * 0.9


def test_latency_is_waited_before_the_first_event(agent):
    agent.configure(latency_ms=400)
    turn = streamed(agent, "chat_agent")
    assert turn.arrival_s[0] >= 0.4
    assert turn.done


def test_thirty_paced_streams_run_concurrently(demo_agent):
    demo_agent.configure(stream_chunk_delay_ms=40)
    body = {**turn_body("chat_completions"), "stream": True}

    async def thirty() -> list[bool]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=40), timeout=30) as client:

            async def one() -> bool:
                response = await client.post(demo_agent.invocations_url(), json=body)
                return response.text.endswith("data: [DONE]\n\n")

            return await asyncio.gather(*(one() for _ in range(30)))

    started = time.monotonic()
    # In a thread of its own, as in test_knobs: the test thread may have an event loop running.
    with ThreadPoolExecutor(max_workers=1) as runner:
        finished = runner.submit(asyncio.run, thirty()).result()
    elapsed = time.monotonic() - started
    assert finished == [True] * 30
    assert elapsed < 8  # one stream alone takes about 0.8 s; thirty in a row would take 25 s


@pytest.mark.parametrize(
    "simulate",
    [
        {"chunk_delay_ms": -1},
        {"chunk_delay_ms": 10_001},
        {"chunk_delay_ms": "5"},
        {"chunk_delay_ms": True},
        {"cut_after_chunks": -1},
        {"cut_after_chunks": 1.5},
        {"stream_error": ""},
        {"stream_error": 5},
        {"stream_error": "x" * 1001},
    ],
)
def test_bad_stream_hooks_are_refused(agent, simulate):
    body = {**turn_body("responses", custom_inputs={"simulate": simulate}), "stream": True}
    response = invoke(agent, body, endpoint=SCHEMA_ENDPOINTS["responses"])
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "custom_inputs.simulate." in response.json()["message"]


@pytest.mark.parametrize(
    "hook", [{"chunk_delay_ms": 5}, {"cut_after_chunks": 1}, {"stream_error": "x"}]
)
def test_stream_hooks_on_an_unstreamed_turn_are_refused(agent, hook):
    response = invoke(agent, turn_body("chat_completions", custom_inputs={"simulate": hook}))
    assert response.status_code == 400
    assert '"stream": true' in response.json()["message"]


@pytest.mark.parametrize("kind", ["not_json", "wrong_shape"])
def test_a_malformed_stream_is_an_event_stream_a_client_cannot_use(agent, kind):
    body = turn_body("chat_completions", custom_inputs={"simulate": {"malformed": kind}})
    response = invoke(agent, {**body, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    first, done = [line for line in response.text.split("\n\n") if line]
    assert done == "data: [DONE]"
    payload = first.removeprefix("data: ")
    if kind == "not_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(payload)
    else:
        assert "choices" not in json.loads(payload)


def test_the_chunk_delay_flag_wins_over_its_environment_variable():
    with run_demo_agent(
        stream_chunk_delay_ms=3, extra_env={"DEMO_AGENT_STREAM_CHUNK_DELAY_MS": "7"}
    ) as agent:
        assert agent.configure()["stream_chunk_delay_ms"] == 3
    with run_demo_agent(extra_env={"DEMO_AGENT_STREAM_CHUNK_DELAY_MS": "7"}) as agent:
        assert agent.configure()["stream_chunk_delay_ms"] == 7
