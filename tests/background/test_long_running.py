"""Chatting with a real LongRunningAgentServer (databricks-ai-bridge; MLflow's AgentServer with
background runs): the turn is a background run, followed by its stream (resumed after a cut
with `starting_after`) or polled, and its trace read from the MLflow tracking server by the id
the run returns."""

import pytest
from asgiref.sync import async_to_sync

from agents import selectors
from agents.client import close_http_client
from agents.schemas import TextDelta
from agents.turns import run_turn, turn_start

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


@pytest.fixture
def server(long_running_server):
    long_running_server.reset()
    return long_running_server


@pytest.fixture
def deployment(deployment_factory, server):
    def make(**fields):
        return deployment_factory(
            model_name="main.agents.long_running",
            endpoint_kind="mlflow_long_running",
            query_endpoint=server.url,  # /responses is added
            mlflow_tracking_uri=server.tracking_uri,
            **fields,
        )

    return make


def run(deployment, user, message, *, stream, **inputs):
    async def go():
        events = []
        try:
            started = await turn_start(
                user=user, deployment_id=deployment.pk, message=message, custom_inputs=inputs
            )
            async for event in run_turn(started, stream=stream):
                events.append(event)
        finally:
            await close_http_client()
        return events[:-1], events[-1].turn

    return async_to_sync(go)()


def test_a_cut_stream_resumes_from_its_sequence_number(deployment, server, reviewer):
    # Started as a stream, the run's POST answers with its events, numbered from 0; that stream
    # is cut after two of them.
    server.cut_next_stream(after=2)
    events, turn = run(deployment(streaming=True), reviewer, "red green blue cyan", stream=True)
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert streamed == "Echo: red green blue cyan"
    assert turn.response == streamed and not turn.incomplete and turn.error == ""
    assert turn.agent_run_id.startswith("resp_") and turn.agent_run_state == "finished"
    stats = server.stats()
    assert stats["streams_cut"] == 1
    assert stats["requests"][0] == ["POST", "/responses"]
    reads = [path for method, path in stats["requests"] if "stream=true" in path]
    # One read of the rest, after the last event the client had (0 or 1, as the cut fell
    # between network packets); an event sent again is dropped: the answer has nothing twice.
    assert len(reads) == 1
    assert reads[0].startswith(f"/responses/{turn.agent_run_id}?stream=true&starting_after=")
    assert stats["runs"] == {turn.agent_run_id: 1}

    # The run returned its trace id; the trace is read from the tracking server when shown.
    assert turn.mlflow_trace_id
    server.wait_for_trace(turn.mlflow_trace_id)
    shown = selectors.request_get_for_user(reviewer, turn.databricks_request_id)
    assert shown.trace is not None, getattr(shown, "trace_error", "")


def test_a_turn_without_streaming_polls_the_run(deployment, server, reviewer):
    events, turn = run(deployment(streaming=False), reviewer, "polled run", stream=False, delay_s=1)
    assert not events
    assert turn.response == "Echo: polled run"
    polls = [p for _, p in server.stats()["requests"] if p == f"/responses/{turn.agent_run_id}"]
    assert len(polls) >= 2


def test_a_failed_run_is_a_failed_turn(deployment, server, reviewer):
    _, turn = run(deployment(streaming=False), reviewer, "boom", stream=False, fail=True)
    assert turn.agent_run_state == "finished"
    assert turn.error.startswith("The agent's run failed"), turn.error
