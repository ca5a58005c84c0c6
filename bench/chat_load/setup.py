"""Set-up in the benchmark database: reviewers with tokens, the three deployments (one per part:
the latency part's agent, the 3 s agent of the in-flight part, a streaming one), emptying their
turns, and reading the body the app sent. Imports Django models: import it after
harness.config.configure()."""

from __future__ import annotations

import json

from django.core.management import call_command
from django.db import connection
from harness.processes import DemoAgent
from harness.reviewers import Reviewer, reviewers_ensure

from agents import services as agent_services
from agents.models import Deployment, RequestLog
from reviewapp.setup import ensure_roles

MODEL_NAME, ENDPOINT_NAME = "main.bench.proxy_agent", "bench-proxy-agent"
# One deployment per case; the version tells them apart (the model name is the bench's own).
CASES = {"latency": "1", "inflight": "2", "stream": "3"}


def set_up(agents: dict[str, DemoAgent], users: int) -> tuple[list[Reviewer], dict]:
    """The database migrated, `users` reviewers with tokens, and a deployment per case in
    `agents` ({"latency": agent, "inflight": ..., "stream": ...}) pointed at this run's agent, its
    turns of earlier runs deleted."""
    call_command("migrate", verbosity=0)
    ensure_roles()
    deployments = {}
    for case, agent in agents.items():
        fields = {
            "display_name": f"Bench proxy agent ({case})",
            "endpoint_name": ENDPOINT_NAME,
            "query_endpoint": agent.invocations_url(ENDPOINT_NAME),
            "agent_schema": "chat_completions",  # no task lookup before the first turn
            "streaming": case == "stream",
            "feedback_sink": "none",
        }
        version = CASES[case]
        deployment = Deployment.objects.filter(model_name=MODEL_NAME, model_version=version).first()
        if deployment is None:
            deployment = agent_services.deployment_create(
                model_name=MODEL_NAME, model_version=version, **fields
            )
        else:  # the demo agent has a new port every run
            deployment = agent_services.deployment_update(deployment=deployment, **fields)
        deployments[case] = deployment
    turns_delete(list(deployments.values()))
    return reviewers_ensure(users, prefix="bench-proxy"), deployments


def turns_delete(deployments: list[Deployment]) -> None:
    """Every turn and conversation of these deployments, in SQL: the ORM would first load
    thousands of rows with their traces to cascade."""
    ids = [d.pk for d in deployments]
    with connection.cursor() as cursor:
        for sql in (
            "DELETE FROM agents_turnkey WHERE conversation_id IN "
            "(SELECT id FROM agents_conversation WHERE deployment_id = ANY(%s))",
            "DELETE FROM agents_requestlog WHERE deployment_id = ANY(%s)",
            "DELETE FROM agents_conversation WHERE deployment_id = ANY(%s)",
        ):
            cursor.execute(sql, [ids])


def request_sent(deployment: Deployment) -> bytes:
    """The body the app sent the agent in its latest answered turn: the other sides send the
    very same bytes' content."""
    turn = (
        RequestLog.objects.filter(deployment=deployment, error="")
        .only("request_raw")
        .order_by("-pk")
        .first()
    )
    connection.close()  # idle from now on; and PgBackends should count the app's alone
    if turn is None:
        raise RuntimeError(f"no answered turn of {deployment} to copy the request from")
    body = json.loads(turn.request_raw)
    if not body.get("databricks_options", {}).get("return_trace"):
        raise RuntimeError(f"the app's request asks for no trace: {turn.request_raw[:300]}")
    return json.dumps(body, separators=(",", ":")).encode()


def turns_logged(deployment: Deployment) -> int:
    return RequestLog.objects.filter(deployment=deployment).count()
