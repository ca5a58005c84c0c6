"""A real Celery worker on real Redis runs the deployment tasks against the real demo agent."""

import socket
import time

import pytest

from agents.models import Deployment, Health
from agents.tasks import deployment_check_reachability, deployments_check_reachability

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(pk: int, timeout_s: float = 30) -> Deployment:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        deployment = Deployment.objects.get(pk=pk)
        if deployment.health_status != Health.UNKNOWN:
            return deployment
        time.sleep(0.2)
    raise AssertionError("the worker never ran the task")


def make(model_name: str, query_endpoint: str) -> Deployment:
    deployment = Deployment(model_name=model_name, model_version="1", query_endpoint=query_endpoint)
    deployment.full_clean()
    deployment.save()
    return deployment


def test_the_worker_checks_one_deployment(celery_worker_on_redis, demo_agent):
    deployment = make(
        "main.demo.rag_agent",
        f"{demo_agent.url}/serving-endpoints/agents_main-demo-rag_agent/invocations",
    )
    deployment_check_reachability.delay(deployment.pk)
    checked = wait_for_health(deployment.pk)
    assert checked.health_status == Health.REACHABLE
    assert "HTTP 405" in checked.health_detail


def test_the_periodic_task_checks_every_enabled_deployment(celery_worker_on_redis, demo_agent):
    up = make("main.demo.up", f"{demo_agent.url}/serving-endpoints/up/invocations")
    down = make(
        "main.demo.down", f"http://127.0.0.1:{closed_port()}/serving-endpoints/x/invocations"
    )
    deployments_check_reachability.delay()
    assert wait_for_health(up.pk).health_status == Health.REACHABLE
    assert wait_for_health(down.pk).health_status == Health.UNREACHABLE


def test_a_task_for_a_deleted_deployment_does_nothing(celery_worker_on_redis, demo_agent):
    survivor = make("main.demo.survivor", f"{demo_agent.url}/serving-endpoints/s/invocations")
    deployment_check_reachability.delay(987654)  # no such row: must not break the worker
    deployment_check_reachability.delay(survivor.pk)
    assert wait_for_health(survivor.pk).health_status == Health.REACHABLE
