"""Celery tasks for review sessions: thin wrappers that take ids and call a service."""

from celery import shared_task
from django.db import OperationalError

from review import mlflow_mirror
from review.mlflow_rest import MlflowError


# Idempotent (setting "complete" twice is the same as once), so acks_late is safe. Only a
# transient MLflow failure (no answer, 5xx, 429) reaches here as MlflowError: asked again later.
@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(MlflowError, OperationalError),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
)
def mlflow_item_status_sync(self, item_id: int) -> str:
    return mlflow_mirror.item_mirror_status(item_id)
