"""Delivery decisions, with the sink faked at its one seam (feedback.transport.post_json)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from feedback import delivery, services, sinks
from feedback.models import Delivery, DeliveryAttempt
from feedback.transport import SinkResponse, TransportError
from tests.feedback.conftest import chat_turn, retriever_span_id

pytestmark = pytest.mark.django_db


def rate(turn, reviewer, value="negative", **extra):
    return services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[{"ratings": {"answer_correct": {"value": value}}, **extra}],
    )


def test_a_delivery_posts_the_protocol_record_once(turn, reviewer, fake_sink):
    span_id = retriever_span_id(turn)
    rating = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[
            {"ratings": {"answer_correct": {"value": "negative"}}, "free_text_comment": "Too vague"}
        ],
        retrieval_assessments=[
            {
                "position": 1,
                "step_id": span_id,
                "ratings": {"chunk_relevance": {"value": "negative"}},
            }
        ],
    )
    d = rating.deliveries.get()
    assert delivery.delivery_run(d.pk, task_id="t-1") == "sent"
    assert delivery.delivery_run(d.pk, task_id="t-2") == "skipped"  # a duplicate message
    assert len(fake_sink.posts) == 1
    post = fake_sink.posts[0]
    assert post["url"] == turn.deployment.effective_feedback_endpoint
    assert post["headers"]["Idempotency-Key"] == str(d.idempotency_key)
    assert post["body"] == {
        "dataframe_records": [
            {
                "request_id": turn.databricks_request_id,
                "source": {"id": reviewer.email, "type": "human"},
                "text_assessments": [
                    {
                        "ratings": {"answer_correct": {"value": "negative"}},
                        "free_text_comment": "Too vague",
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
        ]
    }
    d.refresh_from_db()
    assert (d.status, d.attempts, d.last_error) == ("sent", 1, "")
    attempt = DeliveryAttempt.objects.get(delivery=d)
    assert (attempt.status_code, attempt.task_id, attempt.batch_size) == (200, "t-1", 1)


def test_the_json_strings_switch_sends_the_three_columns_as_strings(turn, reviewer, fake_sink):
    turn.deployment.feedback_json_strings = True
    turn.deployment.save(update_fields=["feedback_json_strings"])
    d = rate(turn, reviewer, "positive").deliveries.get()
    delivery.delivery_run(d.pk)
    record = fake_sink.posts[0]["body"]["dataframe_records"][0]
    assert isinstance(record["source"], str)
    assert json.loads(record["source"]) == {"id": reviewer.email, "type": "human"}
    assert json.loads(record["text_assessments"]) == [
        {"ratings": {"answer_correct": {"value": "positive"}}}
    ]
    assert json.loads(record["retrieval_assessments"]) == []


@pytest.mark.parametrize(
    "answer",
    [
        SinkResponse(503, "down", 7.0),
        SinkResponse(429, "slow down", None),
        TransportError("ConnectError: refused"),
    ],
)
def test_transient_failures_are_retried_later_with_backoff(turn, reviewer, fake_sink, answer):
    fake_sink.answers = [answer]
    d = rate(turn, reviewer).deliveries.get()
    before = timezone.now()
    assert delivery.delivery_run(d.pk) == "retry"
    d.refresh_from_db()
    assert d.status == "pending" and d.attempts == 1
    assert d.last_error
    wait = (d.next_attempt_at - before).total_seconds()
    assert 4 <= wait <= 11  # the first retry waits 5 to 10 s (Retry-After: 7 within that)
    # Not due yet: a message arriving now does not send it early.
    assert delivery.delivery_run(d.pk) == "skipped"
    Delivery.objects.filter(pk=d.pk).update(next_attempt_at=timezone.now())
    assert delivery.delivery_run(d.pk) == "sent"
    assert DeliveryAttempt.objects.filter(delivery=d).count() == 2


def test_the_backoff_doubles_with_jitter_and_is_capped(settings):
    settings.DELIVERY_RETRY_BASE_SECONDS = 10
    settings.DELIVERY_RETRY_MAX_SECONDS = 3600
    for attempts, low, high in [(1, 5, 10), (2, 10, 20), (5, 80, 160), (20, 1800, 3600)]:
        for _ in range(20):
            assert low <= delivery.retry_delay_s(attempts) <= high
    assert delivery.retry_delay_s(1, retry_after_s=120) == 120


def test_other_client_errors_fail_at_once_and_send_again_delivers(
    turn, reviewer, fake_sink, django_capture_on_commit_callbacks
):
    fake_sink.answers = [SinkResponse(401, '{"error_code": "UNAUTHENTICATED"}', None)]
    d = rate(turn, reviewer).deliveries.get()
    assert delivery.delivery_run(d.pk) == "failed"
    d.refresh_from_db()
    assert d.status == "failed"
    assert d.last_error == 'HTTP 401: {"error_code": "UNAUTHENTICATED"}'
    assert delivery.delivery_run(d.pk) == "skipped"  # failed stays failed until sent again
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.delivery_resend(delivery=d)
    assert len(callbacks) == 1
    assert delivery.delivery_run(d.pk) == "sent"
    assert len(fake_sink.posts) == 2


def test_it_gives_up_on_transient_failures_after_the_window(turn, reviewer, fake_sink):
    fake_sink.answers = [SinkResponse(502, "bad gateway", None)]
    d = rate(turn, reviewer).deliveries.get()
    Delivery.objects.filter(pk=d.pk).update(retrying_since=timezone.now() - timedelta(days=2))
    assert delivery.delivery_run(d.pk) == "retry"
    d.refresh_from_db()
    assert d.status == "failed"
    assert d.last_error.startswith("Gave up after 1 attempts over 24 h. Last: HTTP 502")


def test_a_claim_whose_worker_died_is_taken_back_after_the_lease(
    turn, reviewer, fake_sink, settings
):
    d = rate(turn, reviewer).deliveries.get()
    Delivery.objects.filter(pk=d.pk).update(status="sending", claimed_at=timezone.now())
    assert delivery.delivery_run(d.pk) == "skipped"  # someone is on it
    expired = timezone.now() - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS + 1)
    Delivery.objects.filter(pk=d.pk).update(claimed_at=expired)
    assert delivery.delivery_run(d.pk) == "sent"
    assert len(fake_sink.posts) == 1


def test_due_ratings_of_one_deployment_go_in_one_post(demo_deployment, reviewer, fake_sink):
    turns = [chat_turn(demo_deployment, reviewer, message=f"Question {i}") for i in range(3)]
    deliveries = [rate(t, reviewer).deliveries.get() for t in turns]
    assert delivery.delivery_run(deliveries[0].pk) == "sent"
    assert len(fake_sink.posts) == 1
    records = fake_sink.posts[0]["body"]["dataframe_records"]
    assert [r["request_id"] for r in records] == [t.databricks_request_id for t in turns]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert {a.batch_size for a in DeliveryAttempt.objects.all()} == {3}
    for d in deliveries[1:]:  # their own messages find them sent
        assert delivery.delivery_run(d.pk) == "skipped"
    assert len(fake_sink.posts) == 1


def test_the_sweeper_enqueues_only_deliveries_nobody_is_working_on(
    demo_deployment, reviewer, settings, monkeypatch, django_capture_on_commit_callbacks
):
    enqueued = []
    monkeypatch.setattr(
        "feedback.tasks.delivery_send.apply_async", lambda args, **kw: enqueued.append(args[0])
    )
    fresh, lost, crashed, sent = (
        rate(chat_turn(demo_deployment, reviewer, message=f"Q{i}"), reviewer).deliveries.get()
        for i in range(4)
    )
    long_ago = timezone.now() - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS + 5)
    Delivery.objects.filter(pk=lost.pk).update(next_attempt_at=long_ago)
    Delivery.objects.filter(pk=crashed.pk).update(status="sending", claimed_at=long_ago)
    Delivery.objects.filter(pk=sent.pk).update(status="sent", next_attempt_at=long_ago)
    enqueued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.deliveries_sweep() == 2
    assert sorted(enqueued) == sorted([lost.pk, crashed.pk])
    crashed.refresh_from_db()
    assert (crashed.status, crashed.lost_claims) == ("pending", 1)
    # Swept rows are due "now" again, so the next sweep leaves them alone for a while.
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.deliveries_sweep() == 0
    assert fresh.pk not in enqueued


def test_mlflow_assessments_carry_every_part_of_the_rating(turn, reviewer):
    span_id = retriever_span_id(turn)
    rating = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[
            {
                "ratings": {"answer_correct": {"value": "positive"}},
                "free_text_comment": "Good",
                "suggested_output": "Better",
            }
        ],
        retrieval_assessments=[
            {
                "position": 0,
                "step_id": span_id,
                "ratings": {"chunk_relevance": {"value": "negative"}},
                "free_text_comment": "Off topic",
            }
        ],
    )
    items = dict(sinks.mlflow_assessments(rating, "tr-abc"))
    assert items["q:answer_correct"]["feedback"] == {"value": True}
    assert items["q:answer_correct"]["rationale"] == "Good"
    assert items["q:answer_correct"]["source"] == {
        "source_type": "HUMAN",
        "source_id": reviewer.email,
    }
    assert items["expected_response"]["expectation"] == {"value": "Better"}
    doc = items[f"doc:{span_id}:0"]
    assert (doc["span_id"], doc["feedback"], doc["rationale"]) == (
        span_id,
        {"value": False},
        "Off topic",
    )
    assert doc["metadata"]["position"] == "0"
    assert all(a["trace_id"] == "tr-abc" for a in items.values())


def test_a_newer_version_replaces_an_older_one_not_sent_yet(turn, reviewer, fake_sink):
    fake_sink.answers = [SinkResponse(503, "busy", None)]
    old = rate(turn, reviewer, "negative").deliveries.get()
    assert delivery.delivery_run(old.pk) == "retry"  # waiting for its retry
    new = rate(turn, reviewer, "positive").deliveries.get()
    old.refresh_from_db()
    assert old.status == "superseded"
    Delivery.objects.filter(pk=old.pk).update(next_attempt_at=timezone.now())
    assert delivery.delivery_run(old.pk) == "skipped"  # its retry message does nothing
    assert delivery.delivery_run(new.pk) == "sent"
    sent = fake_sink.posts[-1]["body"]["dataframe_records"][0]["text_assessments"]
    assert sent == [{"ratings": {"answer_correct": {"value": "positive"}}}]


def test_a_newer_version_waits_while_an_older_one_is_being_sent(
    turn, reviewer, fake_sink, django_capture_on_commit_callbacks
):
    old = rate(turn, reviewer, "negative").deliveries.get()
    Delivery.objects.filter(pk=old.pk).update(status="sending", claimed_at=timezone.now())
    new = rate(turn, reviewer, "positive").deliveries.get()
    with django_capture_on_commit_callbacks() as callbacks:
        assert delivery.delivery_run(new.pk) == "skipped"
    new.refresh_from_db()
    assert new.status == "pending" and new.next_attempt_at > timezone.now()
    assert len(callbacks) == 1 and fake_sink.posts == []


def test_a_batch_the_sink_refuses_is_sent_record_by_record(demo_deployment, reviewer, fake_sink):
    turns = [chat_turn(demo_deployment, reviewer, message=f"Question {i}") for i in range(3)]
    deliveries = [rate(t, reviewer).deliveries.get() for t in turns]
    fake_sink.answers = [
        SinkResponse(400, "record 1 is bad", None),  # the batch of 3
        SinkResponse(200, "ok", None),
        SinkResponse(400, "this one is bad", None),
        SinkResponse(200, "ok", None),
    ]
    assert delivery.delivery_run(deliveries[0].pk) == "sent"
    assert [len(p["body"]["dataframe_records"]) for p in fake_sink.posts] == [3, 1, 1, 1]
    statuses = [Delivery.objects.get(pk=d.pk).status for d in deliveries]
    assert statuses == ["sent", "failed", "sent"]
    assert Delivery.objects.get(pk=deliveries[1].pk).last_error == "HTTP 400: this one is bad"


def test_an_unexpected_error_is_retried_not_left_claimed(turn, reviewer, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr("feedback.sinks.send_databricks", broken)
    d = rate(turn, reviewer).deliveries.get()
    assert delivery.delivery_run(d.pk) == "retry"
    d.refresh_from_db()
    assert d.status == "pending" and "RuntimeError" in d.last_error


def test_a_task_whose_claim_was_taken_over_changes_nothing(turn, reviewer, fake_sink):
    d = rate(turn, reviewer).deliveries.get()
    batch = delivery.delivery_claim(d.pk)
    Delivery.objects.filter(pk=d.pk).update(claim_token=None, status="sent")  # another won
    delivery._finish(
        batch, sinks.Outcome("failed", 400, "late"), task_id="", started_at=timezone.now()
    )
    d.refresh_from_db()
    assert (d.status, d.last_error) == ("sent", "")


def test_a_delivery_that_keeps_killing_workers_fails(turn, reviewer, fake_sink, settings):
    d = rate(turn, reviewer).deliveries.get()
    expired = timezone.now() - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS + 1)
    Delivery.objects.filter(pk=d.pk).update(status="sending", claimed_at=expired, lost_claims=3)
    assert delivery.delivery_run(d.pk) == "skipped"
    d.refresh_from_db()
    assert d.status == "failed" and "worker died" in d.last_error
    assert fake_sink.posts == []


def test_missing_credentials_fail_and_sdk_trouble_is_retried(turn, reviewer, fake_sink):
    deployment = turn.deployment
    deployment.auth_kind, deployment.auth_env_var = "env_token", "NO_SUCH_TOKEN_VARIABLE"
    deployment.save()
    d = rate(turn, reviewer).deliveries.get()
    assert delivery.delivery_run(d.pk) == "failed"
    d.refresh_from_db()
    assert "NO_SUCH_TOKEN_VARIABLE is not set" in d.last_error
    deployment.auth_kind, deployment.auth_env_var = "databricks", ""
    deployment.databricks_profile = "no-such-profile"
    deployment.save()
    d2 = rate(turn, reviewer, "positive").deliveries.get()
    assert delivery.delivery_run(d2.pk) == "retry"
    assert fake_sink.posts == []


def test_a_backlog_drains_batch_after_batch_from_one_message(
    demo_deployment, reviewer, fake_sink, settings
):
    settings.DELIVERY_BATCH_SIZE = 2
    turns = [chat_turn(demo_deployment, reviewer, message=f"Question {i}") for i in range(5)]
    deliveries = [rate(t, reviewer).deliveries.get() for t in turns]
    assert delivery.delivery_run(deliveries[0].pk) == "sent"
    assert [len(p["body"]["dataframe_records"]) for p in fake_sink.posts] == [2, 2, 1]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert all(delivery.delivery_run(d.pk) == "skipped" for d in deliveries)
