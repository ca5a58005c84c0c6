"""Chatting with a real Databricks Agent Runtime (agentbricks' DurableAgentServer) behind a fake
Apps ingress, signed in with Databricks OAuth for a service principal through databricks-sdk:
background runs followed as they stream, a cut stream resumed, tokens cached and refreshed, and
a run nobody follows any more finished by the page's poll."""

import time

import pytest
from asgiref.sync import async_to_sync

from agents import databricks_auth
from agents.background import collect
from agents.client import close_http_client
from agents.models import RequestLog
from agents.schemas import TextDelta
from agents.turns import run_turn, turn_start

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


@pytest.fixture
def runtime(agent_runtime_server):
    agent_runtime_server.reset()
    databricks_auth.forget_configs()  # each test signs in afresh
    yield agent_runtime_server
    databricks_auth.forget_configs()


@pytest.fixture
def app_deployment(deployment_factory, runtime):
    def make(**fields):
        return deployment_factory(
            model_name="apps.test.agent_bricks_echo",
            endpoint_kind="agent_runtime",
            query_endpoint=runtime.url,  # the app's URL: /api/invocations is added
            auth_kind="databricks_m2m",
            databricks_host=runtime.url,
            oauth_client_id=runtime.client_id,
            auth_env_var=runtime.secret_env_var,
            **fields,
        )

    return make


def run(deployment, user, message, *, stream, stop_after_deltas=None, **inputs):
    """One turn through the turn service; the events before its end, and its row."""

    async def go():
        events = []
        try:
            started = await turn_start(
                user=user, deployment_id=deployment.pk, message=message, custom_inputs=inputs
            )
            turn_events = run_turn(started, stream=stream)
            async for event in turn_events:
                events.append(event)
                deltas = [e for e in events if isinstance(e, TextDelta)]
                if stop_after_deltas is not None and len(deltas) >= stop_after_deltas:
                    await turn_events.aclose()  # the page went away
                    return events, None
        finally:
            await close_http_client()
        return events[:-1], events[-1].turn

    return async_to_sync(go)()


def test_a_streamed_turn_is_a_background_run_with_its_answer_and_trace(
    app_deployment, runtime, reviewer
):
    deployment = app_deployment(streaming=True)
    events, turn = run(deployment, reviewer, "one two three", stream=True)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Echo: one two three"
    turn.refresh_from_db()
    assert turn.response == "Echo: one two three"
    assert (turn.agent_run_state, turn.status_code, turn.error) == ("finished", 200, "")
    assert turn.trace is not None and turn.trace_outline  # from the output's databricks_output
    stats = runtime.stats()
    assert stats["invocations"] == {turn.agent_run_id: 1}
    paths = [path for method, path, auth in stats["requests"] if auth == "oauth"]
    assert paths[0] == "/api/invocations"  # started in the background, then its events
    assert paths[1].startswith(f"/api/invocations/{turn.agent_run_id}/events?after=0")
    # Everything the agent was sent is under `input` (its own payload), as the runtime requires.
    assert '"background": true' in turn.request_raw and '"session_id"' in turn.request_raw


def test_a_turn_without_streaming_polls_the_run(app_deployment, runtime, reviewer):
    deployment = app_deployment(streaming=False)
    events, turn = run(deployment, reviewer, "polled", stream=False, delay_s=1)
    assert turn.response == "Echo: polled"
    assert not events
    polls = [
        p for _, p, _ in runtime.stats()["requests"] if p == f"/api/invocations/{turn.agent_run_id}"
    ]
    assert len(polls) >= 2  # asked while it ran, then read its end


def test_a_cut_stream_is_resumed_after_its_last_event(app_deployment, runtime, reviewer):
    deployment = app_deployment(streaming=True)
    runtime.cut_next_stream(after=3)
    events, turn = run(deployment, reviewer, "alpha beta gamma delta epsilon", stream=True)
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert streamed == "Echo: alpha beta gamma delta epsilon"  # nothing lost, nothing twice
    assert turn.response == streamed and not turn.incomplete
    stats = runtime.stats()
    assert stats["streams_cut"] == 1
    event_reads = [p for _, p, _ in stats["requests"] if "/events?after=" in p]
    assert len(event_reads) == 2 and not event_reads[1].endswith("after=0")
    assert stats["invocations"] == {turn.agent_run_id: 1}


def test_tokens_are_cached_and_refreshed_before_they_expire(app_deployment, runtime, reviewer):
    runtime.set_token_lifetime(45)  # databricks-sdk treats a token as expired 40 s early
    deployment = app_deployment(streaming=False)
    run(deployment, reviewer, "first", stream=False)
    run(deployment, reviewer, "second", stream=False)
    assert runtime.stats()["tokens_issued"] == 1  # one token for both turns and all their polls
    time.sleep(6)
    _, turn = run(deployment, reviewer, "third", stream=False)
    assert turn.response == "Echo: third"
    stats = runtime.stats()
    assert stats["tokens_issued"] == 2
    app_calls = [(path, auth) for _, path, auth in stats["requests"] if path.startswith("/api/")]
    assert app_calls and all(auth == "oauth" for _, auth in app_calls)


def test_a_run_the_page_left_is_finished_once_by_its_poll(
    app_deployment, runtime, reviewer, client
):
    deployment = app_deployment(streaming=True)
    run(deployment, reviewer, "slow answer here", stream=True, stop_after_deltas=1, delay_s=2)
    turn = RequestLog.objects.get()
    assert turn.agent_run_state == "running" and turn.response == ""
    client.force_login(reviewer)
    url = f"/chat/{deployment.pk}/turns/{turn.databricks_request_id}/run/"
    deadline = time.monotonic() + 30
    while True:
        page = client.get(url)
        assert page.status_code == 200
        if b"answering in the background" not in page.content:
            break
        assert b'hx-trigger="every 2s"' in page.content
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.5)
    assert b"Echo: slow answer here" in page.content
    turn.refresh_from_db()
    assert turn.agent_run_state == "finished" and turn.response == "Echo: slow answer here"
    # Read again by the sweep's task: nothing changes, nothing is asked again.
    assert collect.running_turn(turn.pk) is None
    assert RequestLog.objects.count() == 1
    assert runtime.stats()["invocations"] == {turn.agent_run_id: 1}


def test_a_failed_run_is_a_failed_turn(app_deployment, runtime, reviewer):
    deployment = app_deployment(streaming=False)
    _, turn = run(deployment, reviewer, "boom", stream=False, fail=True)
    assert turn.agent_run_state == "finished"
    assert turn.error.startswith("The agent's run failed")
    assert turn.status_code == 502


def test_wrong_credentials_fail_the_turn_without_a_secret(
    app_deployment, runtime, reviewer, monkeypatch
):
    deployment = app_deployment(streaming=False)
    monkeypatch.setenv(runtime.secret_env_var, "wrong-secret")
    _, turn = run(deployment, reviewer, "hello", stream=False)
    assert turn.error == "The app has no usable credentials for this endpoint."
    assert "wrong-secret" not in turn.error_detail
    assert not runtime.stats()["invocations"]


def test_a_turn_still_running_cannot_be_rated_and_can_once_answered(
    app_deployment, runtime, reviewer, client
):
    from rest_framework.test import APIClient

    deployment = app_deployment(streaming=True)
    run(deployment, reviewer, "rate me later", stream=True, stop_after_deltas=1, delay_s=2)
    turn = RequestLog.objects.get()
    api = APIClient()
    api.force_authenticate(reviewer)
    url = f"/api/v1/requests/{turn.databricks_request_id}/assessments/"
    thumbs_up = {"text_assessments": [{"ratings": {"answer_correct": {"value": "positive"}}}]}
    refused = api.post(url, thumbs_up, format="json")
    assert refused.status_code == 400, refused.content
    assert b"still answering" in refused.content
    assert not turn.ratings.exists()
    deadline = time.monotonic() + 30
    while collect.refresh_now(collect.running_turn(turn.pk) or turn).agent_run_state == "running":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert api.post(url, thumbs_up, format="json").status_code == 201


def test_the_sweep_asks_about_each_running_turn_at_most_once_per_interval(
    app_deployment, runtime, reviewer, settings
):
    from datetime import timedelta

    from agents import tasks

    deployment = app_deployment(streaming=True)
    run(deployment, reviewer, "swept later", stream=True, stop_after_deltas=1, delay_s=2)
    turn = RequestLog.objects.get()
    # Just saved by the request that follows it: the sweep leaves it alone for an interval.
    assert collect.turns_due_a_check() == []
    RequestLog.objects.filter(pk=turn.pk).update(
        agent_run_checked_at=turn.created_at
        - timedelta(seconds=settings.BACKGROUND_RUN_CHECK_SECONDS)
    )
    assert collect.turns_due_a_check() == [turn.pk]
    assert collect.turns_due_a_check() == []  # asked already: not again before the interval
    deadline = time.monotonic() + 30
    while tasks.background_run_refresh(turn.pk) == "running":  # what each swept turn's task does
        assert time.monotonic() < deadline
        time.sleep(0.5)
    turn.refresh_from_db()
    assert turn.response == "Echo: swept later"
    assert tasks.background_run_refresh(turn.pk) is None  # finished: nothing to do
    assert collect.turns_due_a_check() == []


def test_a_client_gone_while_the_end_is_written_does_not_save_the_turn_twice(
    transactional_db, app_deployment, runtime, reviewer, monkeypatch
):
    """The page goes away while the run's end is being written (in a thread, which goes on):
    the turn stays as written, not saved again as stopped."""
    import asyncio

    from agents.turns import record

    finish_run = record.finish_run

    def slow_finish(turn):
        saved = finish_run(turn)
        time.sleep(1)  # the request is cancelled meanwhile
        return saved

    monkeypatch.setattr(record, "finish_run", slow_finish)
    deployment = app_deployment(streaming=False)

    async def go():
        async def consume():
            started = await turn_start(
                user=reviewer, deployment_id=deployment.pk, message="hand over", custom_inputs={}
            )
            async for _event in run_turn(started, stream=False):
                pass

        task = asyncio.ensure_future(consume())
        try:
            while not await _finished_in_db():
                await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await close_http_client()

    async_to_sync(go)()
    turn = RequestLog.objects.get()  # one row
    assert turn.response == "Echo: hand over" and turn.error == ""


async def _finished_in_db() -> bool:
    from asgiref.sync import sync_to_async

    # Another thread: the turn's own steps hold the test's thread while they run.
    return await sync_to_async(_finished_exists, thread_sensitive=False)()


def _finished_exists() -> bool:
    from django.db import connection

    try:
        return RequestLog.objects.filter(agent_run_state="finished").exists()
    finally:
        connection.close()
