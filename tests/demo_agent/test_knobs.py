"""Simulated misbehaviour (knobs and per-turn hooks), the token check, and the command line."""

import asyncio
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.demo_agent.helpers import chat_body, invoke, post_feedback
from tests.support.demo_agent import DEFAULT_KNOBS, REPO_ROOT, run_demo_agent


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_runtime_knobs_start_at_the_defaults_and_can_be_read(demo_agent):
    response = httpx.get(f"{demo_agent.url}/_demo/config", timeout=10)
    assert response.json() == DEFAULT_KNOBS
    changed = demo_agent.configure(latency_ms=5, error_rate=0.25)
    assert changed == {**DEFAULT_KNOBS, "latency_ms": 5, "error_rate": 0.25}
    assert httpx.get(f"{demo_agent.url}/_demo/config", timeout=10).json() == changed


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 1.5},
        {"malformed_rate": -0.1},
        {"feedback_error_rate": "0.5"},
        {"latency_ms": -1},
        {"latency_ms": 2.5},
        {"latency_ms": True},
        {"cold_start_s": -1},
        {"stream_chunk_delay_ms": -1},
        {"stream_chunk_delay_ms": 10_001},
        {"stream_chunk_delay_ms": 1.5},
        {"error_rate": 0.5, "no_such_knob": 1},
        [],
    ],
)
def test_bad_knob_values_are_refused_and_change_nothing(demo_agent, body):
    response = httpx.post(f"{demo_agent.url}/_demo/config", json=body, timeout=10)
    assert response.status_code == 400
    assert response.json()["error_code"] in {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}
    assert httpx.get(f"{demo_agent.url}/_demo/config", timeout=10).json() == DEFAULT_KNOBS


def test_error_rate_one_fails_every_turn_with_a_databricks_error(demo_agent):
    demo_agent.configure(error_rate=1.0)
    for _ in range(5):
        response = invoke(demo_agent)
        assert response.status_code == 500
        assert response.json()["error_code"] == "INTERNAL_ERROR"
        assert response.json()["message"]
    demo_agent.configure(error_rate=0.0)
    assert invoke(demo_agent).status_code == 200


def test_malformed_rate_one_answers_200_with_unusable_bodies(demo_agent):
    demo_agent.configure(malformed_rate=1.0)
    kinds = []
    for _ in range(4):
        response = invoke(demo_agent)
        assert response.status_code == 200
        try:
            body = response.json()
        except json.JSONDecodeError:
            kinds.append("not_json")
        else:
            assert "choices" not in body
            kinds.append("wrong_shape")
    assert sorted(set(kinds)) == ["not_json", "wrong_shape"]


def test_latency_ms_makes_every_turn_take_at_least_that_long(demo_agent):
    demo_agent.configure(latency_ms=400)
    for _ in range(2):
        response, elapsed = timed(lambda: invoke(demo_agent))
        assert response.status_code == 200
        assert elapsed >= 0.4


def test_fifty_slow_turns_wait_concurrently(demo_agent):
    demo_agent.configure(latency_ms=1000)

    async def fifty() -> list[int]:
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            responses = await asyncio.gather(
                *(client.post(demo_agent.invocations_url(), json=chat_body()) for _ in range(50))
            )
        return [r.status_code for r in responses]

    # In a thread of its own: Playwright's sync API (browser tests) may leave an event loop
    # marked running in this one, and asyncio.run refuses to start inside it.
    with ThreadPoolExecutor(max_workers=1) as runner:
        statuses, elapsed = timed(lambda: runner.submit(asyncio.run, fifty()).result())
    assert statuses == [200] * 50
    assert 1.0 <= elapsed < 10  # serialised waiting would take 50 s


def test_cold_start_requests_during_warm_up_wait_for_the_same_warm_up(demo_agent):
    demo_agent.configure(cold_start_s=1.2)  # re-arms: the agent is cold again
    started = time.monotonic()

    def turn():
        response = invoke(demo_agent)
        return response.status_code, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(turn)
        time.sleep(0.6)
        later = [pool.submit(turn) for _ in range(3)]
        results = [first.result(), *(f.result() for f in later)]
    assert [status for status, _ in results] == [200] * 4
    # Everyone is answered once the one warm-up is over, about 1.2 s after the first request;
    # a warm-up of their own would end 0.6 s later.
    assert all(1.1 <= finished < 1.65 for _, finished in results), results
    warm, elapsed = timed(lambda: invoke(demo_agent))
    assert warm.status_code == 200
    assert elapsed < 0.6


def test_a_cold_start_set_in_the_environment_delays_only_the_first_request():
    with run_demo_agent(extra_env={"DEMO_AGENT_COLD_START_S": "1"}) as agent:
        assert agent.configure()["cold_start_s"] == 1.0
        first, first_elapsed = timed(lambda: invoke(agent))
        second, second_elapsed = timed(lambda: invoke(agent))
    assert first.status_code == second.status_code == 200
    assert first_elapsed >= 1.0
    assert second_elapsed < 0.9


def test_simulate_delay_slows_only_that_turn(demo_agent):
    slow, elapsed = timed(
        lambda: invoke(demo_agent, chat_body(custom_inputs={"simulate": {"delay_ms": 500}}))
    )
    assert slow.status_code == 200
    assert elapsed >= 0.5


@pytest.mark.parametrize(
    ("status", "error_code"),
    [(429, "REQUEST_LIMIT_EXCEEDED"), (500, "INTERNAL_ERROR"), (503, "TEMPORARILY_UNAVAILABLE")],
)
def test_simulate_status_answers_that_status(demo_agent, status, error_code):
    response = invoke(demo_agent, chat_body(custom_inputs={"simulate": {"status": status}}))
    assert response.status_code == status
    assert response.json()["error_code"] == error_code
    assert ("retry-after" in response.headers) == (status in (429, 503))
    assert invoke(demo_agent).status_code == 200  # the next turn is fine


def test_simulate_malformed_breaks_that_turn(demo_agent):
    not_json = invoke(demo_agent, chat_body(custom_inputs={"simulate": {"malformed": "not_json"}}))
    assert not_json.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        not_json.json()
    wrong = invoke(demo_agent, chat_body(custom_inputs={"simulate": {"malformed": "wrong_shape"}}))
    assert wrong.status_code == 200
    assert "choices" not in wrong.json()


@pytest.fixture(scope="module")
def agent_with_token():
    with run_demo_agent(token="s3cret-token") as agent:
        yield agent


def test_a_token_is_required_when_configured(agent_with_token):
    url = agent_with_token.invocations_url()
    assert httpx.get(f"{agent_with_token.url}/health", timeout=10).status_code == 200
    refused = [
        httpx.post(url, json=chat_body(), timeout=10),
        httpx.post(url, json=chat_body(), headers={"Authorization": "Bearer wrong"}, timeout=10),
        httpx.post(url, json=chat_body(), auth=("someone", "s3cret-token"), timeout=10),
        httpx.post(agent_with_token.feedback_url(), json={"dataframe_records": []}, timeout=10),
        httpx.get(f"{agent_with_token.url}/_demo/config", timeout=10),
    ]
    for response in refused:
        assert response.status_code == 401
        assert response.json()["error_code"] == "UNAUTHENTICATED"
    bearer = {"Authorization": "Bearer s3cret-token"}
    assert httpx.post(url, json=chat_body(), headers=bearer, timeout=10).status_code == 200
    basic = httpx.post(url, json=chat_body(), auth=("token", "s3cret-token"), timeout=10)
    assert basic.status_code == 200
    assert post_feedback(agent_with_token, [{"request_id": "r"}]).status_code == 200
    assert len(agent_with_token.records()) == 1


@pytest.mark.parametrize(
    ("args", "env", "complaint"),
    [
        (["--error-rate", "1.5"], {}, "--error-rate"),
        (["--malformed-rate", "lots"], {}, "--malformed-rate"),
        (["--port", "http"], {}, "--port"),
        (["--port", "70000"], {}, "--port"),
        (["--latency-ms", "-5"], {}, "--latency-ms"),
        (["--cold-start-s", "soon"], {}, "--cold-start-s"),
        (["--stream-chunk-delay-ms", "-1"], {}, "--stream-chunk-delay-ms"),
        ([], {"DEMO_AGENT_STREAM_CHUNK_DELAY_MS": "fast"}, "DEMO_AGENT_STREAM_CHUNK_DELAY_MS"),
        (["--no-such-flag"], {}, "unrecognized arguments"),
        ([], {"DEMO_AGENT_FEEDBACK_ERROR_RATE": "2"}, "DEMO_AGENT_FEEDBACK_ERROR_RATE"),
        (["--feedback-log", str(REPO_ROOT)], {}, "--feedback-log"),
    ],
)
def test_invalid_flags_exit_2_with_a_message(args, env, complaint):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_AGENT_")}
    result = subprocess.run(
        [sys.executable, "-m", "demo_agent", "--port", "1", *args],
        cwd=REPO_ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert complaint in result.stderr
    assert "error:" in result.stderr
