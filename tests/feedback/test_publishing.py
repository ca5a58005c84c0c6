"""A saved rating's task is published after the commit by a background thread: the answer
does not wait for the broker, and a publish that fails loses nothing (the sweeper sends it)."""

import json
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError

from feedback import delivery
from feedback.models import Delivery
from feedback.publishing import publisher
from tests.feedback.conftest import chat_turn

pytestmark = pytest.mark.django_db
THUMBS_DOWN = {"text_assessments": [{"ratings": {"answer_correct": {"value": "negative"}}}]}


def rate(client, turn):
    return client.post(
        f"/api/v1/requests/{turn.databricks_request_id}/assessments/",
        data=json.dumps(THUMBS_DOWN),
        content_type="application/json",
    )


def test_the_answer_does_not_wait_for_the_publish(
    api_client, turn, reviewer, monkeypatch, django_capture_on_commit_callbacks
):
    broker_answers, published = threading.Event(), []

    def slow_publish(args, **kwargs):
        assert broker_answers.wait(10)
        published.append(args[0])

    monkeypatch.setattr("feedback.tasks.delivery_send.apply_async", slow_publish)
    api_client.force_authenticate(reviewer)
    try:
        with django_capture_on_commit_callbacks(execute=True):  # the commit
            response = rate(api_client, turn)
        assert response.status_code == 201
        assert published == [] and not publisher.wait_until_idle(0.2)  # still publishing
    finally:
        broker_answers.set()
    assert publisher.wait_until_idle(10)
    assert published == [Delivery.objects.get().pk]


def test_a_rating_whose_publish_fails_is_kept_and_the_sweeper_enqueues_it(
    api_client, turn, reviewer, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    def broker_down(args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("feedback.tasks.delivery_send.apply_async", broker_down)
    api_client.force_authenticate(reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        response = rate(api_client, turn)
    assert publisher.wait_until_idle(10)
    assert response.status_code == 201 and response.json()["delivery"]["status"] == "pending"
    assert "the sweeper will enqueue those not published" in caplog.text
    pending = Delivery.objects.get()
    assert pending.status == "pending"

    enqueued = []  # the broker is back; a sweep (beat, every DELIVERY_SWEEP_SECONDS) comes
    monkeypatch.setattr(
        "feedback.tasks.delivery_send.apply_async", lambda args, **kw: enqueued.append(args[0])
    )
    overdue = timezone.now() - timedelta(seconds=settings.DELIVERY_SWEEP_SECONDS + 1)
    Delivery.objects.filter(pk=pending.pk).update(next_attempt_at=overdue)
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.deliveries_sweep() == 1
    assert enqueued == [pending.pk]


def test_ratings_saved_while_a_publish_runs_go_out_as_one_message(monkeypatch):
    """A message costs the process ~2 ms of kombu's CPU: under load, the ids that piled up
    go out together (at most MAX_PER_MESSAGE each), and the task sends each of them."""
    from feedback import publishing

    broker_answers, messages = threading.Event(), []

    def slow_publish(args, **kwargs):
        assert broker_answers.wait(10)
        messages.append(tuple(args))

    monkeypatch.setattr("feedback.tasks.delivery_send.apply_async", slow_publish)
    monkeypatch.setattr(publishing, "MAX_PER_MESSAGE", 3)
    publisher.submit(1)
    assert not publisher.wait_until_idle(0.2)  # the first publish waits for the broker
    for delivery_id in range(2, 7):
        publisher.submit(delivery_id)
    broker_answers.set()
    assert publisher.wait_until_idle(10)
    assert messages == [(1,), (2, 3, 4), (5, 6)]


def test_a_message_of_several_deliveries_sends_each(fake_sink, turn, reviewer):
    from feedback import services
    from feedback.tasks import delivery_send

    ratings = [
        services.rating_create(turn=turn, reviewer=reviewer, **THUMBS_DOWN) for _ in range(2)
    ]
    second_version = turn.deployment
    second_version.pk, second_version.model_version = None, "2"  # a copy: Django's idiom
    second_version.save()  # its deliveries are not the first one's batch
    other = chat_turn(second_version, reviewer)
    ratings.append(services.rating_create(turn=other, reviewer=reviewer, **THUMBS_DOWN))
    ids = [rating.saved_deliveries[0].pk for rating in ratings]
    delivery_send.apply(args=ids)
    statuses = dict(Delivery.objects.values_list("pk", "status"))
    assert statuses == {ids[0]: "superseded", ids[1]: "sent", ids[2]: "sent"}
