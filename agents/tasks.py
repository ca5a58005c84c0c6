"""Celery tasks for deployments: thin wrappers that load by id and call a service."""

from celery import shared_task

from agents import services
from agents.models import Deployment


@shared_task
def deployment_check_reachability(deployment_id: int) -> str | None:
    deployment = Deployment.objects.filter(pk=deployment_id).first()
    if deployment is None:
        return None  # deleted since it was enqueued: nothing to check
    return services.deployment_check_reachability(deployment=deployment).health_status


@shared_task
def deployments_check_reachability() -> int:
    """Run by beat every REACHABILITY_CHECK_SECONDS, so the deployments page shows fresh health."""
    return services.deployments_check_reachability()
