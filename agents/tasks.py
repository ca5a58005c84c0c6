"""Celery tasks for deployments: thin wrappers that load by id and call a service."""

from celery import shared_task

from agents import services
from agents.background import collect
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


@shared_task
def background_run_refresh(turn_id: int) -> str | None:
    """Ask the agent once how a background turn's run stands, and finish the turn if it ended.
    Idempotent: a turn already finished (by its page or an earlier task) is left as it is."""
    turn = collect.running_turn(turn_id)
    if turn is None:
        return None
    return collect.refresh_now(turn).agent_run_state


@shared_task
def background_runs_sweep() -> int:
    """Run by beat every BACKGROUND_RUN_SWEEP_SECONDS: the runs whose turns are not finished,
    including those whose page was closed or whose web process stopped."""
    turn_ids = collect.turns_due_a_check()
    for turn_id in turn_ids:
        background_run_refresh.delay(turn_id)
    return len(turn_ids)
