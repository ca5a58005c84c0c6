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
from django.db import OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from agents.models import FeedbackSink
from feedback import sinks
from feedback.models import Delivery, DeliveryAttempt, DeliveryStatus

logger = logging.getLogger(__name__)
CLOCK_SKEW = timedelta(seconds=1)  # a retry message may arrive a little before its due time
MAX_LOST_CLAIMS = 3  # a delivery whose sending killed its worker this often fails instead
IN_FLIGHT_WAIT_S = 5  # how long a newer version waits for an older one being sent right now
RELATED = ("rating__request", "rating__deployment", "deployment")
# The rated turn's big columns: a record needs only its request id.
HEAVY = ("rating__request__trace", "rating__request__request_raw", "rating__request__response_raw")
FINISH_TRIES = 4


def _claim_fields(now, token) -> dict:
    return {"status": DeliveryStatus.SENDING, "claimed_at": now, "claim_token": token}


def _lease_expired(now) -> Q:
    cutoff = now - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    return Q(status=DeliveryStatus.SENDING, claimed_at__lt=cutoff)


def _take_back(rows, now, **fields) -> int:
    """Rows whose lease ran out (their worker died): fail those that did so too often, update
    the others with `fields` and count the lost claim. Returns how many were taken back."""
    expired = rows.filter(_lease_expired(now))
    expired.filter(lost_claims__gte=MAX_LOST_CLAIMS).update(
        status=DeliveryStatus.FAILED,
        claimed_at=None,
        last_error=f"The worker died while sending this {MAX_LOST_CLAIMS} times; see its log.",
    )
    return expired.filter(lost_claims__lt=MAX_LOST_CLAIMS).update(
        lost_claims=F("lost_claims") + 1, **fields
    )


def delivery_claim(delivery_id: int) -> list[Delivery]:
    """Claim the delivery and, for a Databricks sink, other due ones of its deployment.

    Returns the claimed deliveries (this one first), or [] when it is not ours to send: already
    sent, failed or superseded, not due yet, claimed by a live task, or deleted.
    """
    now, token = timezone.now(), uuid.uuid4()
    claim = _claim_fields(now, token)
    mine = Delivery.objects.filter(pk=delivery_id)
    due = Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now + CLOCK_SKEW)
    claimed = bool(mine.filter(due).update(**claim))
    # Not due: usually a duplicate or superseded message, which one query (not three) tells.
    if not claimed and not (
        mine.filter(_lease_expired(now)).exists() and _take_back(mine, now, **claim)
    ):
        return []
    batch = [Delivery.objects.select_related(*RELATED).defer(*HEAVY).get(pk=delivery_id)]
    if batch[0].sink == FeedbackSink.DATABRICKS and settings.DELIVERY_BATCH_SIZE > 1:
        batch += _claim_siblings(batch[0], now, claim)
    return _without_versions_in_flight(batch, now)


def _claim_siblings(first: Delivery, now, claim: dict) -> list[Delivery]:
    """Other due Databricks deliveries of the deployment, up to the batch's count and bytes."""
    sibling_ids = list(
        Delivery.objects.filter(
            deployment_id=first.deployment_id,
            sink=FeedbackSink.DATABRICKS,
            status=DeliveryStatus.PENDING,
            next_attempt_at__lte=now,
        )
        .exclude(pk=first.pk)
        .order_by("pk")
        .values_list("pk", flat=True)[: settings.DELIVERY_BATCH_SIZE - 1]
    )
    if not sibling_ids:
        return []
    Delivery.objects.filter(pk__in=sibling_ids, status=DeliveryStatus.PENDING).update(**claim)
    claimed = Delivery.objects.select_related(*RELATED).defer(*HEAVY)
    claimed = claimed.filter(claim_token=claim["claim_token"])
    siblings, size, excess = [], sinks.record_size(first), []
    for sibling in claimed.exclude(pk=first.pk).order_by("pk"):
        size += sinks.record_size(sibling)
        (excess if size > settings.DELIVERY_BATCH_MAX_BYTES else siblings).append(sibling)
    _release([d.pk for d in excess], claim["claim_token"], next_attempt_at=now)
    return siblings


def _release(ids: list[int], token, *, next_attempt_at) -> None:
    if ids:
        Delivery.objects.filter(pk__in=ids, claim_token=token).update(
            status=DeliveryStatus.PENDING, claimed_at=None, next_attempt_at=next_attempt_at
        )


def _without_versions_in_flight(batch: list[Delivery], now) -> list[Delivery]:
    """Put back deliveries whose reviewer's older version of the same rating is being sent by
    another task right now: the sink must get the versions in order. One query per batch."""
    sending = Delivery.objects.filter(
        sink=batch[0].sink,
        status=DeliveryStatus.SENDING,
        rating__request_id__in={d.rating.request_id for d in batch},
    ).exclude(claim_token=batch[0].claim_token)
    oldest_in_flight: dict[tuple, int] = {}
    for request_id, reviewer_id, rating_id in sending.values_list(
        "rating__request_id", "rating__reviewer_id", "rating_id"
    ):
        key = (request_id, reviewer_id)
        oldest_in_flight[key] = min(rating_id, oldest_in_flight.get(key, rating_id))
    waiting = [
        d
        for d in batch
        if oldest_in_flight.get((d.rating.request_id, d.rating.reviewer_id), d.rating_id)
        < d.rating_id
    ]
    if not waiting:
        return batch
    later = now + timedelta(seconds=IN_FLIGHT_WAIT_S)
    _release([d.pk for d in waiting], batch[0].claim_token, next_attempt_at=later)
    for delivery in waiting:
        enqueue_on_commit(delivery.pk, countdown=IN_FLIGHT_WAIT_S)
    if waiting[0] is batch[0]:
        _release([d.pk for d in batch[1:]], batch[0].claim_token, next_attempt_at=now)
        return []
    return [d for d in batch if d not in waiting]


def enqueue_on_commit(delivery_id: int, *, countdown: float = 0) -> None:
    """`delivery_send.delay_on_commit`, but robust: if the broker is down, the error is logged
    and the transaction's work is kept; the sweeper enqueues the delivery once it is back.
    For the workers (retries, the sweeper); a request publishes through feedback.publishing,
    off its path."""
    from feedback.tasks import delivery_send as delivery_send_task

    def enqueue() -> None:
        delivery_send_task.apply_async((delivery_id,), countdown=countdown or None)

    transaction.on_commit(enqueue, robust=True)


def delivery_run(delivery_id: int, *, task_id: str = "") -> str:
    """Claim, send, record. Returns what happened to this delivery, for logs and tests.

    After a Databricks batch went out, the task goes on with the deployment's other due
    deliveries, batch after batch, for up to DELIVERY_DRAIN_SECONDS: a backlog (a sink that was
    down, a busy review day) drains at the sink's pace, not at one broker message per rating.
    The messages of the ratings it took find them sent and do nothing.
    """
    batch = delivery_claim(delivery_id)
    if not batch:
        return "skipped"
    kind = _deliver(batch, task_id)
    if kind == "sent" and batch[0].sink == FeedbackSink.DATABRICKS:
        _drain(batch[0].deployment_id, task_id)
    return kind


def _deliver(batch: list[Delivery], task_id: str) -> str:
    outcome = _send_and_finish(batch, task_id)
    if outcome.kind == "failed" and len(batch) > 1 and outcome.status_code:
        # The sink refused the batch: find the record it refuses by sending each on its own.
        outcomes = [_send_and_finish([d], task_id, reclaim=True) for d in batch]
        return outcomes[0].kind
    return outcome.kind


def _drain(deployment_id: int, task_id: str) -> None:
    stop_at = time.monotonic() + settings.DELIVERY_DRAIN_SECONDS
    while time.monotonic() < stop_at:
        next_id = (
            Delivery.objects.filter(
                deployment_id=deployment_id,
                sink=FeedbackSink.DATABRICKS,
                status=DeliveryStatus.PENDING,
                next_attempt_at__lte=timezone.now(),
            )
            .order_by("pk")
            .values_list("pk", flat=True)
            .first()
        )
        if next_id is None:
            return
        batch = delivery_claim(next_id)
        if batch and _deliver(batch, task_id) != "sent":
            return  # the sink is struggling: leave the rest to their own retries


def _send_and_finish(batch: list[Delivery], task_id: str, *, reclaim: bool = False):
    if reclaim:  # back from "failed" to ours, for a try of its own
        first = batch[0]
        first.attempts += 1
        Delivery.objects.filter(pk=first.pk, claim_token=first.claim_token).update(
            status=DeliveryStatus.SENDING
        )
    started_at, clock = timezone.now(), time.monotonic()
    limit = min(settings.CELERY_TASK_SOFT_TIME_LIMIT, settings.DELIVERY_LEASE_SECONDS)
    deadline = clock + limit / 2
    try:
        outcome = _send(batch[0], batch, deadline)
    except Exception as exc:  # a bug or the soft time limit must not leave the row claimed
        logger.exception("delivery %s: unexpected error", batch[0].pk)
        outcome = sinks.Outcome("retry", None, f"Unexpected error in the app: {type(exc).__name__}")
    if not outcome.duration_ms:
        outcome.duration_ms = int((time.monotonic() - clock) * 1000)
    _finish_retrying(batch, outcome, task_id=task_id, started_at=started_at)
    return outcome


def _finish_retrying(batch, outcome, **kwargs) -> None:
    """_finish, tried again on a database error: after a successful POST, giving up here would
    leave the row "sending" until its lease ran out, and then send it again. _finish is one
    transaction that only touches rows holding this claim, so trying again is safe."""
    for attempt in range(FINISH_TRIES):
        try:
            _finish(batch, outcome, **kwargs)
            return
        except OperationalError:
            if attempt == FINISH_TRIES - 1:
                raise
            logger.warning("delivery %s: database error while recording; again", batch[0].pk)
            time.sleep(0.2 * 2**attempt)


def _send(first: Delivery, batch: list[Delivery], deadline: float) -> sinks.Outcome:
    deployment = first.deployment
    if deployment.effective_feedback_sink != first.sink:
        return sinks.Outcome(
            "failed", None, f"The deployment's sink is now {deployment.effective_feedback_sink!r}."
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
    ours = Delivery.objects.filter(
        pk__in=[d.pk for d in batch],
        claim_token=batch[0].claim_token,
        status=DeliveryStatus.SENDING,
    )
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
            enqueue_on_commit(delivery.pk, countdown=delay)
        return
    error = outcome.error
    if outcome.kind == "retry":
        hours = settings.DELIVERY_GIVE_UP_AFTER_SECONDS / 3600
        error = f"Gave up after {attempts} attempts over {hours:g} h. Last: {error}"
    row.update(status=DeliveryStatus.FAILED, attempts=attempts, last_error=error, claimed_at=None)
    logger.warning("delivery %s failed: %s", delivery.pk, error)


def deliveries_sweep(*, limit: int = 1000) -> int:
    """Enqueue due deliveries that nobody is working on: their message was lost (the broker
    restarted empty) or their worker died (the lease ran out). Returns how many.

    Each swept row's due time moves to now, so the next sweeps leave it alone for a grace
    period instead of flooding the queue while the workers catch up.
    """
    now = timezone.now()
    overdue = now - timedelta(seconds=settings.DELIVERY_SWEEP_SECONDS)
    # Taken back as pending and overdue, so the query below picks them up with the lost ones.
    back = {"status": DeliveryStatus.PENDING, "claimed_at": None, "next_attempt_at": overdue}
    _take_back(Delivery.objects.all(), now, **back)
    ids = list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=overdue)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    Delivery.objects.filter(pk__in=ids).update(next_attempt_at=now)
    for pk in ids:
        enqueue_on_commit(pk)
    if ids:
        logger.info("sweeper re-enqueued %d deliveries", len(ids))
    return len(ids)
