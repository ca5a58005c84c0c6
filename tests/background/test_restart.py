"""The web process dies while the agent answers a turn in the background: the run goes on at
the agent, beat's sweep reads its end, and after a restart the turn is there, answered once.
Everything is real: uvicorn and Celery (worker with beat) as subprocesses on PostgreSQL and
Redis, the Agent Runtime behind its ingress, databricks-sdk OAuth."""

import threading
import time

import httpx
import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from agents.models import RequestLog
from tests.conftest import _use_broker, require_server
from tests.support.celery_workers import start_worker
from tests.support.web_process import start_web

pytestmark = [pytest.mark.integration]


@pytest.fixture
def beat_worker(redis_url, transactional_db, tmp_path):
    require_server(connection.vendor == "postgresql", "PostgreSQL (the processes share it)")
    from reviewapp.celery import app

    previous = app.conf.broker_url
    _use_broker(app, redis_url)
    app.control.purge()
    worker = start_worker(
        "sweeper",
        redis_url,
        tmp_path,
        beat=True,
        BACKGROUND_RUN_SWEEP_SECONDS=1,
        BACKGROUND_RUN_CHECK_SECONDS=1,
    )
    try:
        yield worker
    finally:
        worker.stop()
        _use_broker(app, previous)


def wait_until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_background_turn_survives_the_web_process_dying(
    agent_runtime_server, beat_worker, redis_url, deployment_factory, reviewer, tmp_path
):
    runtime = agent_runtime_server
    runtime.reset()
    deployment = deployment_factory(
        model_name="apps.test.agent_bricks_restart",
        endpoint_kind="agent_runtime",
        query_endpoint=runtime.url,
        auth_kind="databricks_m2m",
        databricks_host=runtime.url,
        oauth_client_id=runtime.client_id,
        auth_env_var=runtime.secret_env_var,
    )
    token = Token.objects.create(user=reviewer).key
    headers = {"Authorization": f"Token {token}"}
    web = start_web(redis_url, tmp_path)
    answer: dict = {}

    def ask():
        try:
            answer["response"] = httpx.post(
                f"{web.url}/api/v1/deployments/{deployment.pk}/chat/",
                json={"message": "survive the restart", "custom_inputs": {"delay_s": 4}},
                headers=headers,
                timeout=60,
            )
        except httpx.HTTPError as exc:
            answer["error"] = exc

    caller = threading.Thread(target=ask)
    caller.start()
    try:
        turn = wait_until(
            lambda: RequestLog.objects.filter(agent_run_state="running").first(),
            30,
            "the turn saved with its run",
        )
        web.kill()  # the way a machine dies: no shutdown, no cleanup
        caller.join(timeout=30)
        assert "response" not in answer  # the caller lost its connection with the process
        assert runtime.stats()["invocations"].get(turn.agent_run_id) in (None, 1)

        wait_until(
            lambda: RequestLog.objects.filter(pk=turn.pk, agent_run_state="finished").exists(),
            60,
            f"beat's sweep to finish the run\n{beat_worker.log.read_text()[-3000:]}",
        )
        web = start_web(redis_url, tmp_path)
        detail = httpx.get(
            f"{web.url}/api/v1/requests/{turn.databricks_request_id}/", headers=headers, timeout=30
        )
        assert detail.status_code == 200, detail.text
        body = detail.json()
        assert body["message"]["content"] == "Echo: survive the restart"
        assert body["background_run"] == {"id": turn.agent_run_id, "state": "finished"}
        assert "error" not in body
        assert RequestLog.objects.count() == 1  # the answer is logged once
        assert runtime.stats()["invocations"] == {turn.agent_run_id: 1}  # and asked once
    finally:
        web.stop()
