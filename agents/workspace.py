"""Import a Databricks workspace's agent serving endpoints as Deployments (`sync_deployments`).

One Deployment per Unity Catalog model version served by an endpoint whose `task` is an agent
task (protocol.md §1.1). Rows are matched by (model_name, model_version). A sync owns only what
the workspace decides (WORKSPACE_FIELDS); display name, instructions, custom inputs, access,
enabled, streaming and timeout stay as the admin set them.

Chat turns go to the served entity's own URL,
`{host}/serving-endpoints/{endpoint}/served-models/{entity}/invocations` (what
databricks.agents.deploy returns as `query_endpoint`, protocol.md §5.1), even for the entity
that takes 100% of the traffic: a row stands for one model version, and the endpoint-level URL
would send its turns, and the ratings of them, to whichever version takes the traffic after the
next deploy.
"""

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied, Unauthenticated
from databricks.sdk.service.serving import ServingEndpoint
from django.core.exceptions import ValidationError

from agents import services
from agents.models import AgentSchema, AuthKind, Deployment, EndpointKind, FeedbackSink

AGENT_TASKS: dict[str, str] = {
    "agent/v1/chat": AgentSchema.CHAT_COMPLETIONS,
    "agent/v2/chat": AgentSchema.CHAT_AGENT,
    "agent/v1/responses": AgentSchema.RESPONSES,
}
# The legacy feedback model's served entity name; templates detect it by this name (§4.1).
FEEDBACK_ENTITY_NAME = "feedback"
WORKSPACE_FIELDS = (
    "endpoint_name",
    "served_entity_name",
    "query_endpoint",
    "endpoint_url",
    "endpoint_kind",
    "agent_schema",
    "auth_kind",
    "auth_env_var",
    "databricks_profile",
    "feedback_sink",
    "feedback_endpoint",
)
_SECRET_ENV_VARS = ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_PASSWORD")
T = TypeVar("T")


class WorkspaceError(Exception):
    """The workspace cannot be reached or refused us; the message is safe to print."""


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


@dataclass
class SyncLine:
    action: str  # created, updated, unchanged, skipped, invalid, disabled, ignored
    subject: str
    detail: str = ""


@dataclass
class SyncReport:
    host: str
    dry_run: bool
    lines: list[SyncLine] = field(default_factory=list)
    not_agents: Counter = field(default_factory=Counter)  # task -> endpoints ignored

    def add(self, action: str, subject: str, detail: str = "") -> None:
        self.lines.append(SyncLine(action, subject, detail))

    def count(self, action: str) -> int:
        return sum(1 for line in self.lines if line.action == action)


def workspace_connect(*, profile: str = "", timeout_s: int = 30) -> WorkspaceClient:
    """A client from databricks-sdk unified auth: `profile` in ~/.databrickscfg (or
    DATABRICKS_CONFIG_FILE), else DATABRICKS_HOST with DATABRICKS_TOKEN or
    DATABRICKS_CLIENT_ID/SECRET. Raises WorkspaceError when no credentials resolve."""
    try:
        config = Config(
            profile=profile or None,
            retry_timeout_seconds=timeout_s,
            http_timeout_seconds=timeout_s,
        )
    except ValueError as exc:
        where = f"profile {profile!r}" if profile else "the DATABRICKS_* environment"
        raise WorkspaceError(
            f"databricks-sdk found no usable credentials in {where}: {_safe_message(exc)}"
        ) from None
    return WorkspaceClient(config=config)


def workspace_sync(
    *,
    client: WorkspaceClient,
    profile: str = "",
    dry_run: bool = False,
    disable_missing: bool = False,
) -> SyncReport:
    """Create or update a Deployment per served agent model version; see the module docstring.

    Raises WorkspaceError (before any write) when the endpoints cannot be listed. A row that does
    not validate is reported as `invalid` and not saved; the others still are.
    """
    config = client.config
    host = config.host.rstrip("/")
    report = SyncReport(host=host, dry_run=dry_run)
    agents = _served_agents(client, report)
    # A profile named by DATABRICKS_CONFIG_PROFILE is stored too, so chat turns need not rely
    # on the server having the same variable set.
    stored_profile = profile or config.profile or ""
    workspace_page = f"?o={config.workspace_id}" if config.workspace_id else ""
    for agent in agents:
        _sync_one(agent, host, stored_profile, workspace_page, report)
    if disable_missing:
        _disable_missing(host, {agent.key for agent in agents}, report)
    return report


# --- Reading the workspace -----------------------------------------------------------------------


def _served_agents(client: WorkspaceClient, report: SyncReport) -> list[ServedAgent]:
    endpoints = _call(client, lambda: list(client.serving_endpoints.list()))
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
        detailed = _call(client, lambda: client.serving_endpoints.get(name), one_endpoint=True)
    except _EndpointSkipped as exc:
        report.add("skipped", name, str(exc))
        return []
    if detailed.config and detailed.config.served_entities:
        return detailed.config.served_entities
    update = detailed.state.config_update if detailed.state else None
    report.add("skipped", name, f"serves nothing yet (config update: {_enum_value(update)})")
    return []


def _enum_value(value: Any) -> str:
    return getattr(value, "value", None) or "unknown"


class _EndpointSkipped(Exception):
    """One endpoint cannot be read, though the workspace answers: skip it, keep syncing."""


def _call(client: WorkspaceClient, fetch: Callable[[], T], *, one_endpoint: bool = False) -> T:
    """Run one SDK call, turning its failures into a WorkspaceError that says what to fix."""
    host = client.config.host
    try:
        return fetch()
    except NotFound as exc:
        if one_endpoint:
            raise _EndpointSkipped("the endpoint was deleted while syncing") from None
        raise WorkspaceError(
            f"{host} has no serving-endpoints API ({_safe_message(exc)}); is it a workspace URL?"
        ) from None
    except PermissionDenied as exc:
        # The listing worked with these credentials, so this is one endpoint's permissions.
        if one_endpoint:
            raise _EndpointSkipped(f"not allowed to read it: {_safe_message(exc)}") from None
        raise WorkspaceError(
            f"{host} refused the credentials ({client.config.auth_type} auth): "
            f"{_safe_message(exc)} Check the token, the service principal or the profile."
        ) from None
    except Unauthenticated as exc:
        raise WorkspaceError(
            f"{host} refused the credentials ({client.config.auth_type} auth): "
            f"{_safe_message(exc)} Check the token, the service principal or the profile."
        ) from None
    except (TimeoutError, requests.RequestException) as exc:
        cause = exc.__cause__ or exc
        raise WorkspaceError(
            f"Cannot reach {host} within {client.config.retry_timeout_seconds} s "
            f"({_connection_reason(cause)}). Check DATABRICKS_HOST or the profile's host."
        ) from None
    except DatabricksError as exc:
        raise WorkspaceError(f"{host} answered with an error: {_safe_message(exc)}") from None
    except ValueError as exc:  # the SDK's OAuth token exchange reports refusals this way
        raise WorkspaceError(
            f"databricks-sdk could not authenticate to {host} ({client.config.auth_type}): "
            f"{_safe_message(exc)}"
        ) from None


def _connection_reason(exc: BaseException) -> str:
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "timed out"):
        if known in text:
            return known.lower()
    return type(exc).__name__


def _safe_message(exc: BaseException) -> str:
    """The SDK's message without its config dump, and with no secret of ours in it."""
    text = str(exc).split(" Config: ", 1)[0].strip()
    for name in _SECRET_ENV_VARS:
        secret = os.environ.get(name, "")
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text[:500]


# --- Writing rows --------------------------------------------------------------------------------


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


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _sync_one(
    agent: ServedAgent, host: str, profile: str, workspace_page: str, report: SyncReport
) -> None:
    existing = Deployment.objects.filter(
        model_name=agent.model_name, model_version=agent.model_version
    ).first()
    if existing is not None and _origin(existing.query_endpoint) != host.lower():
        report.add(
            "skipped",
            agent.label,
            f"an existing row points at {_origin(existing.query_endpoint)}; not taking it over",
        )
        return
    desired = _desired_fields(agent, host, profile, workspace_page, existing)
    where = f"{agent.endpoint_name}/{agent.served_entity_name} ({agent.task})"
    try:
        if existing is None:
            _create(agent, desired, report.dry_run)
            feedback = ", feedback model" if agent.feedback_entity_name else ""
            report.add("created", agent.label, f"{where}{feedback}")
            return
        changed = [name for name, value in desired.items() if getattr(existing, name) != value]
        if not changed:
            report.add("unchanged", agent.label, where)
            return
        _update(existing, {name: desired[name] for name in changed}, report.dry_run)
        report.add("updated", agent.label, "changed " + ", ".join(changed))
    except ValidationError as exc:
        report.add("invalid", agent.label, _validation_summary(exc))


def _create(agent: ServedAgent, fields: dict[str, Any], dry_run: bool) -> None:
    identity = {"model_name": agent.model_name, "model_version": agent.model_version}
    if dry_run:
        Deployment(**identity, **fields).full_clean()
    else:
        services.deployment_create(**identity, **fields)


def _update(existing: Deployment, changes: dict[str, Any], dry_run: bool) -> None:
    if dry_run:
        for name, value in changes.items():
            setattr(existing, name, value)
        existing.full_clean()
    else:
        services.deployment_update(deployment=existing, **changes)


def _validation_summary(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return "; ".join(
            f"{name}: {' '.join(messages)}" for name, messages in exc.message_dict.items()
        )
    return " ".join(exc.messages)


def _disable_missing(host: str, served: set[tuple[str, str]], report: SyncReport) -> None:
    rows = Deployment.objects.filter(endpoint_kind=EndpointKind.DATABRICKS, enabled=True)
    for row in rows.order_by("model_name", "model_version"):
        if _origin(row.query_endpoint) != host.lower():
            continue
        if (row.model_name, row.model_version) in served:
            continue
        if not report.dry_run:
            services.deployment_set_enabled(deployment=row, enabled=False)
        report.add(
            "disabled", row.model_at_version, "no agent endpoint of this workspace serves it"
        )
