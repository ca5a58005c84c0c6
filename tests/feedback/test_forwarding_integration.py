"""Forwarding end to end: a real Celery worker on real Redis posts to the demo agent's real
feedback endpoint, and what arrives is what the reviewer chose."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from feedback import services
from feedback.models import Delivery, DeliveryAttempt
from feedback.publishing import publisher
from feedback.tasks import deliveries_sweep, delivery_send
from tests.feedback.conftest import chat_turn, retriever_span_id
from tests.support.demo_agent import REPO_ROOT, run_demo_agent

pytestmark = pytest.mark.integration
ENDPOINT = "agents_main-demo-rag_agent"


def wait_for(predicate, timeout_s=30, what="the condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def delivered(pk: int) -> Delivery:
    return wait_for(
        lambda: Delivery.objects.filter(pk=pk, status="sent").first(), what=f"delivery {pk}"
    )


def records_for(agent, request_id: str) -> list[dict]:
    return [e for e in agent.records(ENDPOINT) if e["record"]["request_id"] == request_id]


def thumbs_down(turn, reviewer, **text):
    return services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[{"ratings": {"answer_correct": {"value": "negative"}}, **text}],
    )


@pytest.fixture
def fast_retries(settings):
    settings.DELIVERY_RETRY_BASE_SECONDS = 1
    settings.DELIVERY_RETRY_MAX_SECONDS = 2
    return settings


def test_a_rating_arrives_at_the_sink_with_what_the_reviewer_chose(
    celery_worker_on_redis, demo_agent, demo_deployment, reviewer
):
    turn = chat_turn(demo_deployment, reviewer, top_k=2)
    span_id = retriever_span_id(turn)
    rating = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[
            {
                "ratings": {"answer_correct": {"value": "negative"}},
                "free_text_comment": "Too short",
                "suggested_output": "Tracing records inputs and outputs.",
            }
        ],
        retrieval_assessments=[
            {
                "position": 1,
                "step_id": span_id,
                "ratings": {"chunk_relevance": {"value": "negative"}},
            }
        ],
    )
    delivery = delivered(rating.deliveries.get().pk)
    [entry] = records_for(demo_agent, turn.databricks_request_id)
    assert entry["idempotency_key"] == str(delivery.idempotency_key)
    assert entry["record"] == {
        "request_id": turn.databricks_request_id,
        "source": {"id": reviewer.email, "type": "human"},
        "text_assessments": [
            {
                "ratings": {"answer_correct": {"value": "negative"}},
                "free_text_comment": "Too short",
                "suggested_output": "Tracing records inputs and outputs.",
            }
        ],
        "retrieval_assessments": [
            {
                "position": 1,
                "step_id": span_id,
                "ratings": {"chunk_relevance": {"value": "negative"}},
            }
        ],
    }


def test_a_sink_that_is_down_then_up_gets_the_rating_exactly_once(
    celery_worker_on_redis, demo_agent, demo_deployment, reviewer, fast_retries
):
    demo_agent.configure(feedback_error_rate=1.0)  # every feedback post answers 503
    turn = chat_turn(demo_deployment, reviewer)
    pk = thumbs_down(turn, reviewer).deliveries.get().pk
    wait_for(
        lambda: Delivery.objects.filter(pk=pk, attempts__gte=2, status="pending").exists(),
        what="two failed attempts",
    )
    assert records_for(demo_agent, turn.databricks_request_id) == []
    assert "HTTP 503" in Delivery.objects.get(pk=pk).last_error
    demo_agent.configure(feedback_error_rate=0.0)
    delivery = delivered(pk)
    assert len(records_for(demo_agent, turn.databricks_request_id)) == 1
    codes = list(
        DeliveryAttempt.objects.filter(delivery_id=pk).values_list("status_code", flat=True)
    )
    assert codes[-1] == 200 and set(codes[:-1]) == {503}
    assert delivery.attempts == len(codes)


def test_a_duplicate_enqueue_posts_once(
    celery_worker_on_redis, demo_agent, demo_deployment, reviewer
):
    turn = chat_turn(demo_deployment, reviewer)
    pk = thumbs_down(turn, reviewer).deliveries.get().pk
    for _ in range(3):
        delivery_send.delay(pk)
    delivered(pk)
    marker = thumbs_down(chat_turn(demo_deployment, reviewer), reviewer)  # queued after them
    delivered(marker.deliveries.get().pk)
    assert len(records_for(demo_agent, turn.databricks_request_id)) == 1
    assert DeliveryAttempt.objects.filter(delivery_id=pk).count() == 1


def test_a_refused_rating_fails_visibly_and_send_again_delivers(
    celery_worker_on_redis, demo_deployment, reviewer, monkeypatch
):
    with run_demo_agent(token="the-right-token") as guarded:
        demo_deployment.query_endpoint = guarded.invocations_url(ENDPOINT)
        demo_deployment.feedback_endpoint = guarded.feedback_url(ENDPOINT)
        demo_deployment.auth_kind = "env_token"
        demo_deployment.auth_env_var = "TEST_FEEDBACK_TOKEN"
        demo_deployment.save()
        monkeypatch.setenv("TEST_FEEDBACK_TOKEN", "the-right-token")
        turn = chat_turn(demo_deployment, reviewer)
        monkeypatch.setenv("TEST_FEEDBACK_TOKEN", "a-revoked-token")
        delivery = thumbs_down(turn, reviewer).deliveries.get()
        failed = wait_for(
            lambda: Delivery.objects.filter(pk=delivery.pk, status="failed").first(),
            what="the delivery to fail",
        )
        assert failed.last_error.startswith("HTTP 401")
        assert failed.attempts == 1  # a 4xx is not retried
        monkeypatch.setenv("TEST_FEEDBACK_TOKEN", "the-right-token")
        assert services.delivery_resend(delivery=failed)
        delivered(delivery.pk)
        assert len(records_for(guarded, turn.databricks_request_id)) == 1


def test_the_sweeper_delivers_a_rating_whose_message_was_lost(
    celery_worker_on_redis, demo_agent, demo_deployment, reviewer, settings, monkeypatch
):
    settings.DELIVERY_SWEEP_SECONDS = 1
    turn = chat_turn(demo_deployment, reviewer)
    with monkeypatch.context() as patched:  # the broker loses the message (restarted empty)
        patched.setattr(delivery_send, "apply_async", lambda *args, **kwargs: None)
        pk = thumbs_down(turn, reviewer).deliveries.get().pk
        assert publisher.wait_until_idle(10)  # published (into the void) in the background
    time.sleep(1.5)
    assert Delivery.objects.get(pk=pk).status == "pending"
    deliveries_sweep.delay()  # what beat runs every DELIVERY_SWEEP_SECONDS
    delivered(pk)
    assert len(records_for(demo_agent, turn.databricks_request_id)) == 1


def _start_worker(redis_url: str, tmp_path: Path, name: str) -> subprocess.Popen:
    db = connection.settings_dict
    if connection.vendor == "sqlite":  # the suite's SQLite test database is a file
        database_url = f"sqlite:///{db['NAME']}"
    else:
        database_url = (
            f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}"
        )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_url,
        "DELIVERY_LEASE_SECONDS": "3",
        "DELIVERY_TIMEOUT_SECONDS": "2",
        "VAR_DIR": str(tmp_path),
        "SECRET_KEY": "worker-test-key",
    }
    log = (tmp_path / f"{name}.log").open("wb")
    argv = [
        str(Path(sys.executable).parent / "celery"),
        "-A",
        "reviewapp",
        "worker",
        "--concurrency=1",
        "--loglevel=INFO",
        f"--hostname={name}@%h",
    ]
    return subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def test_a_worker_killed_in_the_middle_of_a_send_still_delivers(
    redis_url, transactional_db, demo_agent, demo_deployment, reviewer, settings, tmp_path
):
    # A worker in another process must see the test's rows: PostgreSQL, or SQLite in a file.
    assert connection.vendor == "postgresql" or not connection.is_in_memory_db()
    from reviewapp.celery import app

    settings.DELIVERY_LEASE_SECONDS, settings.DELIVERY_TIMEOUT_SECONDS = 3, 2
    settings.DELIVERY_SWEEP_SECONDS = 1
    previous, app.conf.broker_url, app._pool = app.conf.broker_url, redis_url, None
    app.control.purge()
    worker = _start_worker(redis_url, tmp_path, "doomed")
    try:
        turn = chat_turn(demo_deployment, reviewer)
        demo_agent.configure(latency_ms=1500)  # the sink is slow: the kill lands mid-post
        pk = thumbs_down(turn, reviewer).deliveries.get().pk
        wait_for(
            lambda: Delivery.objects.filter(pk=pk, status="sending").exists(),
            timeout_s=60,
            what="the worker to claim the delivery",
        )
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        assert Delivery.objects.get(pk=pk).status == "sending"  # claimed, never finished
        demo_agent.configure(latency_ms=0)
        worker = _start_worker(redis_url, tmp_path, "heir")
        time.sleep(3.5)  # the dead worker's lease runs out
        deliveries_sweep.delay()
        delivery = wait_for(
            lambda: Delivery.objects.filter(pk=pk, status="sent").first(),
            timeout_s=60,
            what="the heir to deliver",
        )
        entries = records_for(demo_agent, turn.databricks_request_id)
        # The killed post may or may not have reached the sink; every copy has one key.
        assert 1 <= len(entries) <= 2
        assert {e["idempotency_key"] for e in entries} == {str(delivery.idempotency_key)}
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        app.conf.broker_url, app._pool = previous, None
