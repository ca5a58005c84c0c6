"""Writes for deployments: create, update, delete, enable/disable, reachability check."""

import logging
import time
from typing import Any

import httpx
from django.db import transaction
from django.utils import timezone

from agents.auth import AgentAuthError, auth_headers
from agents.models import Deployment, Health

logger = logging.getLogger(__name__)

REACHABILITY_TIMEOUT_S = 5.0
_M2M_FIELDS = ("allowed_users", "allowed_groups")


@transaction.atomic
def deployment_create(**fields: Any) -> Deployment:
    """Create a deployment after full validation; raises ValidationError and saves nothing."""
    relations = {name: fields.pop(name) for name in _M2M_FIELDS if name in fields}
    deployment = Deployment(**fields)
    deployment.full_clean()
    deployment.save()
    for name, values in relations.items():
        getattr(deployment, name).set(values)
    return deployment


@transaction.atomic
def deployment_update(*, deployment: Deployment, **fields: Any) -> Deployment:
    relations = {name: fields.pop(name) for name in _M2M_FIELDS if name in fields}
    for name, value in fields.items():
        setattr(deployment, name, value)
    deployment.full_clean()
    deployment.save()
    for name, values in relations.items():
        getattr(deployment, name).set(values)
    return deployment


def deployment_delete(*, deployment: Deployment) -> None:
    deployment.delete()


def deployment_set_enabled(*, deployment: Deployment, enabled: bool) -> Deployment:
    deployment.enabled = enabled
    deployment.save(update_fields=["enabled", "updated_at"])
    return deployment


def deployment_check_reachability(*, deployment: Deployment) -> Deployment:
    """Probe the query endpoint once and store what was seen.

    A GET on an invocations URL answers 405 when the endpoint is up, so any answer below 500
    other than 401/403 means reachable; the agent itself is not invoked (that would cost a turn).
    """
    status, detail = _probe(deployment)
    deployment.health_status = status
    deployment.health_detail = detail[:500]
    deployment.health_checked_at = timezone.now()
    deployment.save(update_fields=["health_status", "health_detail", "health_checked_at"])
    return deployment


def _probe(deployment: Deployment) -> tuple[str, str]:
    try:
        headers = auth_headers(deployment)
    except AgentAuthError as exc:
        return Health.UNAUTHORIZED, str(exc)
    started = time.monotonic()
    try:
        response = httpx.get(
            deployment.query_endpoint, headers=headers, timeout=REACHABILITY_TIMEOUT_S
        )
    except httpx.TimeoutException:
        return Health.UNREACHABLE, f"No answer within {REACHABILITY_TIMEOUT_S:.0f} s."
    except httpx.HTTPError as exc:
        return Health.UNREACHABLE, f"Cannot connect: {type(exc).__name__}."
    elapsed_ms = (time.monotonic() - started) * 1000
    seen = f"HTTP {response.status_code} in {elapsed_ms:.0f} ms"
    if response.status_code in (401, 403):
        return Health.UNAUTHORIZED, f"{seen}: the endpoint refused our credentials."
    if response.status_code >= 500:
        return Health.ERROR, f"{seen}."
    return Health.REACHABLE, f"{seen}."


def deployments_check_reachability() -> int:
    """Check every enabled deployment; returns how many were checked."""
    checked = 0
    for deployment in Deployment.objects.filter(enabled=True):
        deployment_check_reachability(deployment=deployment)
        checked += 1
    return checked
