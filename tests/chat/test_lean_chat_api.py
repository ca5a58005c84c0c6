"""The chat API under uvicorn, as `make run` serves it: a token's turn takes the lean path
(agents/lean_chat_api.py) and answers as the documented API does; past the cap of turns in
flight a turn is refused at once with 503 and Retry-After, and the app recovers; a client that
hangs up mid-turn still leaves one complete row; a permission change made by another process
takes effect on the next turn."""

import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
from django.contrib.auth.models import Group
from django.core.signals import request_started
from rest_framework.authtoken.models import Token

from agents.models import Conversation, RequestLog, TurnKey
from agents.turns import STOPPED, admission

pytestmark = [pytest.mark.integration]
QUESTION = "How does the review app collect feedback?"


@pytest.fixture
def caller(transactional_db, django_user_model):
    user = django_user_model.objects.create_user("lean-stakeholder", "lean@example.com")
    user.groups.add(Group.objects.get(name="stakeholder"))
    return user


@pytest.fixture
def token(caller) -> str:
    return Token.objects.create(user=caller).key


@pytest.fixture
def deployment(transactional_db, deployment_factory, demo_agent):
    endpoint = "agents_main-demo-rag_agent"
    return deployment_factory(
        endpoint_name=endpoint,
        query_endpoint=f"{demo_agent.url}/serving-endpoints/{endpoint}/invocations",
        agent_schema="chat_completions",
    )


def post_turn(server, deployment, token: str, body: dict, timeout: float = 30, **params):
    return httpx.post(
        f"{server.url}/api/v1/deployments/{deployment.pk}/chat/",
        json=body,
        params=params,
        headers={"Authorization": f"Token {token}"},
        timeout=timeout,
    )


def test_a_token_turn_takes_the_lean_path_and_answers_as_documented(
    asgi_live_server, deployment, token
):
    django_requests = []

    def count(**kwargs):
        django_requests.append(kwargs)

    request_started.connect(count)
    try:
        response = post_turn(asgi_live_server, deployment, token, {"message": QUESTION})
        trace_left_out = post_turn(
            asgi_live_server, deployment, token, {"message": QUESTION}, trace="none"
        )
    finally:
        request_started.disconnect(count)
    assert response.status_code == 200, response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    turn = RequestLog.objects.get(databricks_request_id=body["request_id"])
    assert body["message"] == {"role": "assistant", "content": turn.response}
    assert body["trace"]["roots"], "the normalized trace, as the API documents"
    assert "trace" not in trace_left_out.json()
    assert django_requests == []  # neither went through Django's handler


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ({"message": QUESTION}, {"Authorization": "Token not-a-token"}, 401),
        ({}, {}, 400),
        ({"message": "   "}, {}, 400),
        ({"message": "a", "custom_inputs": [1]}, {}, 400),
    ],
)
def test_bad_calls_get_a_clear_error_and_change_nothing(
    asgi_live_server, deployment, token, body, headers, status
):
    response = httpx.post(
        f"{asgi_live_server.url}/api/v1/deployments/{deployment.pk}/chat/",
        json=body,
        headers={"Authorization": f"Token {token}", **headers},
        timeout=30,
    )
    assert response.status_code == status, response.text
    assert response.json()
    if status == 401:
        assert response.headers["www-authenticate"] == "Token"
    assert not RequestLog.objects.exists()
    assert not Conversation.objects.exists()


def test_unknown_deployments_invalid_json_and_huge_bodies_are_refused(
    asgi_live_server, deployment, token, settings
):
    auth = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    url = f"{asgi_live_server.url}/api/v1/deployments"
    unknown = httpx.post(f"{url}/999999/chat/", json={"message": "hi"}, headers=auth)
    broken = httpx.post(f"{url}/{deployment.pk}/chat/", content=b"{nope", headers=auth)
    huge = b'{"message": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b'"}'
    too_big = httpx.post(f"{url}/{deployment.pk}/chat/", content=huge, headers=auth)
    assert (unknown.status_code, broken.status_code, too_big.status_code) == (404, 400, 413)
    assert "JSON parse error" in broken.json()["detail"]
    assert not RequestLog.objects.exists()


def test_past_the_cap_a_turn_is_refused_at_once_and_the_app_recovers(
    asgi_live_server, deployment, token, settings
):
    settings.CHAT_MAX_TURNS_IN_FLIGHT = 1
    slow = {"message": QUESTION, "custom_inputs": {"simulate": {"delay_ms": 1500}}}
    first: dict = {}
    thread = threading.Thread(
        target=lambda: first.update(r=post_turn(asgi_live_server, deployment, token, slow))
    )
    thread.start()
    deadline = time.monotonic() + 10
    while admission.in_flight() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    clock = time.monotonic()
    refused = post_turn(asgi_live_server, deployment, token, {"message": "And now?"})
    refused_in = time.monotonic() - clock
    thread.join(timeout=30)

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == str(admission.RETRY_AFTER_S)
    assert "busy" in refused.json()["detail"]
    assert refused_in < 1.0, "refused at once, not after waiting"
    assert first["r"].status_code == 200
    assert list(RequestLog.objects.values_list("request", flat=True)) == [QUESTION]
    assert Conversation.objects.count() == 1  # the refused turn started none

    again = post_turn(asgi_live_server, deployment, token, {"message": "And now?"})
    assert again.status_code == 200
    assert admission.in_flight() == 0


def test_a_client_that_hangs_up_mid_turn_leaves_one_complete_row(
    asgi_live_server, deployment, token
):
    slow = {
        "message": QUESTION,
        "idempotency_key": "hang-up-1",
        "custom_inputs": {"simulate": {"delay_ms": 3000}},
    }
    with pytest.raises(httpx.ReadTimeout):
        post_turn(asgi_live_server, deployment, token, slow, timeout=0.7)
    deadline = time.monotonic() + 10
    while not RequestLog.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    turn = RequestLog.objects.get()
    assert (turn.error, turn.status_code) == (STOPPED, 499)
    assert turn.request == QUESTION and turn.request_raw and turn.execution_time_ms > 0
    assert TurnKey.objects.get(key="hang-up-1").turn == turn
    assert admission.in_flight() == 0


def test_a_permission_change_in_another_process_takes_effect_on_the_next_turn(
    asgi_live_server, deployment, token, caller, settings
):
    team = Group.objects.create(name="team-a")
    caller.groups.add(team)
    deployment.allowed_groups.add(team)  # open to team-a only
    first = post_turn(asgi_live_server, deployment, token, {"message": QUESTION})
    assert first.status_code == 200  # the server's process now holds the caller's access

    # Another process (as another web worker would) takes the caller out of the team.
    remove = (
        "from django.contrib.auth import get_user_model; "
        "from django.contrib.auth.models import Group; "
        "get_user_model().objects.get(username='lean-stakeholder')"
        ".groups.remove(Group.objects.get(name='team-a'))"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", remove],
        env={**os.environ, "DATABASE_URL": _database_url(settings)},
        check=True,
        timeout=60,
    )

    after = post_turn(asgi_live_server, deployment, token, {"message": "Still there?"})
    assert after.status_code == 404  # the deployment is no longer open to them
    assert RequestLog.objects.count() == 1


def _database_url(settings) -> str:
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{database['NAME']}"
    host, port = database.get("HOST") or "127.0.0.1", database.get("PORT") or 5432
    user = database.get("USER") or "postgres"
    return f"postgres://{user}@{host}:{port}/{database['NAME']}"
