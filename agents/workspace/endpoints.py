"""Model Serving agent endpoints as Deployments: one per Unity Catalog model version served
by an endpoint whose `task` is an agent task (protocol.md §1.1), matched by (model_name,
model_version). A sync owns only what the workspace decides (_desired_fields); display name,
instructions, custom inputs, access, enabled, streaming and timeout stay as the admin set them.

Chat turns go to the served entity's own URL,
`{host}/serving-endpoints/{endpoint}/served-models/{entity}/invocations` (what
databricks.agents.deploy returns as `query_endpoint`, protocol.md §5.1), even for the entity
that takes 100% of the traffic: a row stands for one model version, and the endpoint-level URL
would send its turns, and the ratings of them, to whichever version takes the traffic after the
next deploy.
"""

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.serving import ServingEndpoint

from agents.models import AgentSchema, AuthKind, Deployment, EndpointKind, FeedbackSink
from agents.workspace.calls import EndpointSkipped, call, enum_value
from agents.workspace.rows import SyncReport, disable_missing, write_row

AGENT_TASKS: dict[str, str] = {
    "agent/v1/chat": AgentSchema.CHAT_COMPLETIONS,
    "agent/v2/chat": AgentSchema.CHAT_AGENT,
    "agent/v1/responses": AgentSchema.RESPONSES,
}


# The legacy feedback model's served entity name; templates detect it by this name (§4.1).
FEEDBACK_ENTITY_NAME = "feedback"


@dataclass(frozen=True)
class ServedAgent:
    """A UC model version served by an agent endpoint."""

    endpoint_name: str
    served_entity_name: str
    model_name: str
    model_version: str
    task: str
    feedback_entity_name: str  # "" when the endpoint serves no feedback model

    @property
    def key(self) -> tuple[str, str]:
        return (self.model_name, self.model_version)

    @property
    def label(self) -> str:
        return f"{self.model_name}@{self.model_version}"


def served_agents(client: WorkspaceClient, report: SyncReport) -> list[ServedAgent]:
    endpoints = call(client, lambda: list(client.serving_endpoints.list()))
    found: dict[tuple[str, str], ServedAgent] = {}
    for endpoint in sorted(endpoints, key=lambda e: e.name or ""):
        name = endpoint.name or ""
        task = endpoint.task or ""
        if task not in AGENT_TASKS:
            report.not_agents[task or "no task"] += 1
            report.add("ignored", name, f"task {task or '(none)'} is not an agent task")
            continue
        entities = _served_entities(client, endpoint, report)
        feedback = next((e for e in entities if e.name == FEEDBACK_ENTITY_NAME), None)
        for entity in entities:
            if entity is feedback:
                continue
            subject = f"{name}/{entity.name}"
            if not (entity.entity_name and entity.entity_version):
                report.add("skipped", subject, "not a Unity Catalog model version")
                continue
            if entity.entity_name.count(".") != 2:
                report.add(
                    "skipped",
                    subject,
                    f"{entity.entity_name} is not a Unity Catalog name (catalog.schema.model)",
                )
                continue
            agent = ServedAgent(
                endpoint_name=name,
                served_entity_name=entity.name or "",
                model_name=entity.entity_name,
                model_version=str(entity.entity_version),
                task=task,
                feedback_entity_name=feedback.name if feedback else "",
            )
            first = found.setdefault(agent.key, agent)
            if first is not agent:
                report.add(
                    "skipped",
                    subject,
                    f"{agent.label} is also served by {first.endpoint_name}, which was kept "
                    "(one row per model version)",
                )
    return list(found.values())


def _served_entities(client: WorkspaceClient, endpoint: ServingEndpoint, report: SyncReport):
    if endpoint.config and endpoint.config.served_entities:
        return endpoint.config.served_entities
    # list() summaries may come without a config; the endpoint's own page has it.
    name = endpoint.name or ""
    try:
        detailed = call(client, lambda: client.serving_endpoints.get(name), one_endpoint=True)
    except EndpointSkipped as exc:
        report.add("skipped", name, str(exc))
        return []
    if detailed.config and detailed.config.served_entities:
        return detailed.config.served_entities
    update = detailed.state.config_update if detailed.state else None
    report.add("skipped", name, f"serves nothing yet (config update: {enum_value(update)})")
    return []


def sync_endpoint(
    agent: ServedAgent, host: str, profile: str, workspace_page: str, report: SyncReport
) -> None:
    existing = Deployment.objects.filter(
        model_name=agent.model_name, model_version=agent.model_version
    ).first()
    if existing is not None and origin(existing.query_endpoint) != host.lower():
        report.add(
            "skipped",
            agent.label,
            f"an existing row points at {origin(existing.query_endpoint)}; not taking it over",
        )
        return
    desired = _desired_fields(agent, host, profile, workspace_page, existing)
    where = f"{agent.endpoint_name}/{agent.served_entity_name} ({agent.task})"
    feedback = ", feedback model" if agent.feedback_entity_name else ""
    write_row(
        {"model_name": agent.model_name, "model_version": agent.model_version},
        existing,
        desired,
        report,
        subject=agent.label,
        where=where,
        created=f"{where}{feedback}",
    )


def _desired_fields(
    agent: ServedAgent, host: str, profile: str, workspace_page: str, existing: Deployment | None
) -> dict[str, Any]:
    endpoint_base = f"{host}/serving-endpoints/{agent.endpoint_name}"
    fields: dict[str, Any] = {
        "endpoint_name": agent.endpoint_name,
        "served_entity_name": agent.served_entity_name,
        "query_endpoint": f"{endpoint_base}/served-models/{agent.served_entity_name}/invocations",
        "endpoint_url": f"{host}/ml/endpoints/{agent.endpoint_name}/{workspace_page}",
        "endpoint_kind": EndpointKind.DATABRICKS,
        "agent_schema": AGENT_TASKS[agent.task],
        "auth_kind": AuthKind.DATABRICKS,
        "auth_env_var": "",
        "databricks_profile": profile,
    }
    # Sending ratings to MLflow instead is an admin's choice the workspace cannot see.
    if existing is None or existing.feedback_sink != FeedbackSink.MLFLOW:
        if agent.feedback_entity_name:
            fields["feedback_sink"] = FeedbackSink.DATABRICKS
            fields["feedback_endpoint"] = (
                f"{endpoint_base}/served-models/{agent.feedback_entity_name}/invocations"
            )
        else:
            fields["feedback_sink"] = FeedbackSink.NONE
            fields["feedback_endpoint"] = ""
    return fields


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def disable_vanished_endpoints(host: str, agents: list[ServedAgent], report: SyncReport) -> None:
    """Disable this host's endpoint rows whose model version no agent endpoint serves any more."""
    endpoint_rows = Deployment.objects.filter(
        endpoint_kind=EndpointKind.DATABRICKS, enabled=True
    ).order_by("model_name", "model_version")
    disable_missing(
        (row for row in endpoint_rows if origin(row.query_endpoint) == host.lower()),
        {agent.key for agent in agents},
        report,
        subject=lambda row: row.model_at_version,
        reason="no agent endpoint of this workspace serves it",
    )
