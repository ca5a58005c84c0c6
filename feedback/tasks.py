"""Celery tasks for forwarding ratings: thin wrappers that take ids and call feedback.delivery.

Both are idempotent (the delivery's claim decides who sends), which is what makes the
settings' acks_late and reject_on_worker_lost safe: a redelivered message finds the row sent,
or claimed by a live task, and does nothing.
"""

from celery import shared_task
from django.db import OperationalError

from feedback import delivery


# A database hiccup while claiming (a lock timeout, a dropped connection) is retried soon
# rather than left to the sweeper; the claim makes the retry harmless.
@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=1,
    retry_jitter=True,
    max_retries=5,
)
def delivery_send(self, delivery_id: int, *more_ids: int) -> str:
    """`more_ids`: deliveries published in the same message (feedback/publishing.py), run
    one after another; most are the same deployment's and go out in the first one's batch."""
    task_id = self.request.id or ""
    outcomes = [delivery.delivery_run(one, task_id=task_id) for one in (delivery_id, *more_ids)]
    return " ".join(outcomes)


@shared_task
def deliveries_sweep() -> int:
    """Run by beat every DELIVERY_SWEEP_SECONDS."""
    return delivery.deliveries_sweep()
