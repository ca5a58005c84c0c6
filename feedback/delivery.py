"""Forwarding a rating: claim the delivery, post it, record the attempt, decide what is next.

The claim is a conditional UPDATE (pending and due, or sending with an expired lease), so a
delivery is worked on by one task at a time, and never posted again once it was sent, however
often its message is delivered. Databricks deliveries of one deployment that are due together
go in one POST (up to DELIVERY_BATCH_SIZE records).
"""

import logging
import random
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from agents.models import FeedbackSink
from feedback import sinks
from feedback.models import Delivery, DeliveryAttempt, DeliveryStatus

logger = logging.getLogger(__name__)
CLOCK_SKEW = timedelta(seconds=1)  # a retry message may arrive a little before its due time


def _claimable(now) -> Q:
    lease_expired = now - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    return Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now + CLOCK_SKEW) | Q(
        status=DeliveryStatus.SENDING, claimed_at__lt=lease_expired
    )


def delivery_claim(delivery_id: int) -> list[Delivery]:
    """Claim the delivery and, for a Databricks sink, other due ones of its deployment.

    Returns the claimed deliveries (this one first), or [] when it is not ours to send: already
    sent or failed, not due yet, claimed by a live task, or deleted.
    """
    now, token = timezone.now(), uuid.uuid4()
    claim = {"status": DeliveryStatus.SENDING, "claimed_at": now, "claim_token": token}
    if not Delivery.objects.filter(_claimable(now), pk=delivery_id).update(**claim):
        return []
    related = ("rating__request", "rating__deployment", "deployment")
    delivery = Delivery.objects.select_related(*related).get(pk=delivery_id)
    batch = [delivery]
    if delivery.sink == FeedbackSink.DATABRICKS and settings.DELIVERY_BATCH_SIZE > 1:
        sibling_ids = list(
            Delivery.objects.filter(
                deployment_id=delivery.deployment_id,
                sink=FeedbackSink.DATABRICKS,
                status=DeliveryStatus.PENDING,
                next_attempt_at__lte=now,
            )
            .exclude(pk=delivery_id)
            .order_by("pk")
            .values_list("pk", flat=True)[: settings.DELIVERY_BATCH_SIZE - 1]
        )
        if sibling_ids:
            Delivery.objects.filter(pk__in=sibling_ids, status=DeliveryStatus.PENDING).update(
                **claim
            )
            siblings = Delivery.objects.select_related(*related).filter(claim_token=token)
            batch += list(siblings.exclude(pk=delivery_id).order_by("pk"))
    return batch


def delivery_run(delivery_id: int, *, task_id: str = "") -> str:
    """Claim, send, record. Returns what happened to this delivery, for logs and tests."""
    batch = delivery_claim(delivery_id)
    if not batch:
        return "skipped"
    first = batch[0]
    started_at, clock = timezone.now(), time.monotonic()
    deadline = clock + settings.DELIVERY_LEASE_SECONDS / 2
    try:
        outcome = _send(first, batch, deadline)
    except Exception as exc:  # a bug must not leave the row claimed until the lease runs out
        logger.exception("delivery %s: unexpected error", delivery_id)
        outcome = sinks.Outcome("retry", None, f"Unexpected error in the app: {type(exc).__name__}")
    if not outcome.duration_ms:
        outcome.duration_ms = int((time.monotonic() - clock) * 1000)
    _finish(batch, outcome, task_id=task_id, started_at=started_at)
    return outcome.kind


def _send(first: Delivery, batch: list[Delivery], deadline: float) -> sinks.Outcome:
    deployment = first.deployment
    if deployment.feedback_sink != first.sink:
        return sinks.Outcome(
            "failed", None, f"The deployment's sink is now {deployment.feedback_sink!r}."
        )
    if first.sink == FeedbackSink.DATABRICKS:
        return sinks.send_databricks(deployment, batch)
    if first.sink == FeedbackSink.MLFLOW:
        return sinks.send_mlflow(first, deadline=deadline)
    return sinks.Outcome("failed", None, f"Unknown sink {first.sink!r}.")


def retry_delay_s(attempts: int, retry_after_s: float | None = None) -> float:
    """Exponential backoff with jitter, capped; at least what the sink asked for (Retry-After)."""
    cap = settings.DELIVERY_RETRY_MAX_SECONDS
    delay = min(cap, settings.DELIVERY_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    delay *= random.uniform(0.5, 1.0)
    if retry_after_s:
        delay = max(delay, min(cap, retry_after_s))
    return delay


def _finish(batch: list[Delivery], outcome: sinks.Outcome, *, task_id: str, started_at) -> None:
    now = timezone.now()
    token = batch[0].claim_token
    ours = Delivery.objects.filter(claim_token=token, status=DeliveryStatus.SENDING)
    with transaction.atomic():
        DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(
                delivery_id=d.pk,
                started_at=started_at,
                duration_ms=outcome.duration_ms,
                status_code=outcome.status_code,
                error=outcome.error[:1000],
                task_id=(task_id or "")[:64],
                batch_size=len(batch),
            )
            for d in batch
        )
        if outcome.kind == "sent":
            ours.update(
                status=DeliveryStatus.SENT,
                sent_at=now,
                attempts=F("attempts") + 1,
                last_error="",
                claimed_at=None,
            )
            return
        for delivery in batch:
            _finish_unsent(delivery, outcome, now, ours.filter(pk=delivery.pk))


def _finish_unsent(delivery: Delivery, outcome: sinks.Outcome, now, row) -> None:
    attempts = delivery.attempts + 1
    give_up_at = delivery.retrying_since + timedelta(
        seconds=settings.DELIVERY_GIVE_UP_AFTER_SECONDS
    )
    if outcome.kind == "retry" and now < give_up_at:
        delay = retry_delay_s(attempts, outcome.retry_after_s)
        if row.update(
            status=DeliveryStatus.PENDING,
            attempts=attempts,
            next_attempt_at=now + timedelta(seconds=delay),
            last_error=outcome.error,
            claimed_at=None,
        ):
            from feedback.tasks import delivery_send as delivery_send_task

            transaction.on_commit(
                lambda: delivery_send_task.apply_async((delivery.pk,), countdown=delay)
            )
        return
    error = outcome.error
    if outcome.kind == "retry":
        hours = settings.DELIVERY_GIVE_UP_AFTER_SECONDS / 3600
        error = f"Gave up after {attempts} attempts over {hours:g} h. Last: {error}"
    row.update(status=DeliveryStatus.FAILED, attempts=attempts, last_error=error, claimed_at=None)
    logger.warning("delivery %s failed: %s", delivery.pk, error)


def deliveries_sweep(*, limit: int = 1000) -> int:
    """Enqueue due deliveries that nobody is working on: their message was lost (the broker
    restarted empty) or their worker died (the lease ran out). Returns how many."""
    from feedback.tasks import delivery_send as delivery_send_task

    now = timezone.now()
    grace = timedelta(seconds=settings.DELIVERY_SWEEP_SECONDS)
    lease_expired = now - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    stuck = Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now - grace) | Q(
        status=DeliveryStatus.SENDING, claimed_at__lt=lease_expired
    )
    ids = list(
        Delivery.objects.filter(stuck)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in ids:
        delivery_send_task.delay(pk)
    if ids:
        logger.info("sweeper re-enqueued %d deliveries", len(ids))
    return len(ids)
