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

The workspace's Databricks Apps that are Agent Runtime agents are imported too, one Deployment
per app with `endpoint_kind` `agent_runtime` (turns run in the background, agents/background/).
Agents made with the Agent Bricks CLI are deployed as apps named `agent-bricks-<name>`
(AGENT_APP_PREFIX); other apps are web apps and are left out unless named with `--app`. An app
has no Unity Catalog model, so its row is keyed by a name this module derives (app_model_name):
`apps.<workspace host>.<app name>`, version 1, unique per (host, app name). Its turns go to the
app's URL + `/api/invocations` and need a Databricks OAuth token (Apps refuse a personal access
token), so an app is skipped when the sync's own credentials are a PAT.
"""

import os
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied, Unauthenticated
from databricks.sdk.service.apps import App
from databricks.sdk.service.serving import ServingEndpoint
from django.core.exceptions import ValidationError

from agents import databricks_auth, services
from agents.models import AgentSchema, AuthKind, Deployment, EndpointKind, FeedbackSink
from agents.models.deployment import INVOCATION_PATH

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
# `agentbricks deploy` names an Agent Runtime app `agent-bricks-<name>` (Databricks docs,
# "Deploy an agent to Agent Runtime"); the app's agent answers at INVOCATION_PATH.
AGENT_APP_PREFIX = "agent-bricks-"
APP_MODEL_CATALOG = "apps"
APP_MODEL_VERSION = "1"
# What a sync owns on an app's row. The auth fields are left alone on a row whose admin chose
# Databricks OAuth for a service principal (databricks_m2m).
APP_WORKSPACE_FIELDS = (
    "endpoint_name",
    "served_entity_name",
    "query_endpoint",
    "endpoint_url",
    "endpoint_kind",
    "auth_kind",
    "auth_env_var",
    "databricks_profile",
    "oauth_client_id",
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
    not_agent_apps: int = 0  # apps left out: not agent-bricks-*, not named with --app

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
    apps: Collection[str] = (),
) -> SyncReport:
    """Create or update a Deployment per served agent model version and per Agent Runtime app
    (`agent-bricks-*`, plus the apps named in `apps`); see the module docstring.

    Raises WorkspaceError (before any write) when the endpoints or the apps cannot be listed; a
    workspace without the Apps API, or credentials not allowed to list apps, only skip the apps.
    A row that does not validate is reported as `invalid` and not saved; the others still are.
    """
    config = client.config
    host = config.host.rstrip("/")
    report = SyncReport(host=host, dry_run=dry_run)
    agents = _served_agents(client, report)
    listed_apps = _list_apps(client, report)
    # A profile named by DATABRICKS_CONFIG_PROFILE is stored too, so chat turns need not rely
    # on the server having the same variable set.
    stored_profile = profile or config.profile or ""
    workspace_page = f"?o={config.workspace_id}" if config.workspace_id else ""
    for agent in agents:
        _sync_one(agent, host, stored_profile, workspace_page, report)
    if listed_apps is not None:
        for app in _agent_apps(listed_apps, set(apps), report):
            _sync_app(app, host, stored_profile, workspace_page, report)
    if disable_missing:
        endpoint_rows = Deployment.objects.filter(
            endpoint_kind=EndpointKind.DATABRICKS, enabled=True
        ).order_by("model_name", "model_version")
        _disable_missing(
            (row for row in endpoint_rows if _origin(row.query_endpoint) == host.lower()),
            {agent.key for agent in agents},
            report,
            subject=lambda row: row.model_at_version,
            reason="no agent endpoint of this workspace serves it",
        )
    if disable_missing and listed_apps is not None:
        # Every app the workspace still has counts, agent or not, ready or not: only an app that
        # is gone disables its row. Rows outside this host's apps.<host>. names are not ours.
        _disable_missing(
            Deployment.objects.filter(
                endpoint_kind=EndpointKind.AGENT_RUNTIME,
                enabled=True,
                model_name__startswith=app_model_name(host, ""),
            ).order_by("model_name", "model_version"),
            {(app_model_name(host, app.name or ""), APP_MODEL_VERSION) for app in listed_apps},
            report,
            subject=lambda row: f"apps/{row.endpoint_name}",
            reason="the workspace has no app of this name any more",
        )
    return report


def app_model_name(host: str, app_name: str) -> str:
    """The model_name an app's row is keyed by: `apps.<host>.<app name>`, the host's netloc and
    the app name with every character a Unity Catalog name segment cannot hold (`.`, `:`, `-`)
    turned into `_` (app names are lowercase letters, digits and `-`, so no two collide). With
    version APP_MODEL_VERSION it passes the catalog.schema.model validator; with a blank app name
    it is the prefix of every app row of that host."""
    netloc = re.sub(r"[^a-z0-9_-]", "_", urlsplit(host).netloc.lower())
    return f"{APP_MODEL_CATALOG}.{netloc}.{re.sub(r'[^A-Za-z0-9_]', '_', app_name)}"


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


def _list_apps(client: WorkspaceClient, report: SyncReport) -> list[App] | None:
    """Every app of the workspace (databricks-sdk follows next_page_token), or None when the
    workspace has no Apps API or these credentials may not list apps (reported as skipped)."""

    def fetch() -> list[App]:
        try:
            return list(client.apps.list())
        except (NotFound, PermissionDenied) as exc:
            raise _AppsUnavailable(_safe_message(exc)) from None

    try:
        return _call(client, fetch)
    except _AppsUnavailable as exc:
        report.add("skipped", "apps", f"cannot list the workspace's apps: {exc}")
        return None


def _agent_apps(listed: list[App], named: set[str], report: SyncReport) -> list[App]:
    """The listed apps that are Agent Runtime agents (AGENT_APP_PREFIX) or were named, and are
    deployed and running; the others are reported as ignored or skipped."""
    by_name = {app.name: app for app in listed if app.name}
    for name in sorted(named - by_name.keys()):
        report.add(
            "skipped", f"apps/{name}", "the workspace has no app of this name (or hides it from us)"
        )
    chosen = []
    for name, app in sorted(by_name.items()):
        subject = f"apps/{name}"
        if not (name.startswith(AGENT_APP_PREFIX) or name in named):
            report.not_agent_apps += 1
            report.add(
                "ignored",
                subject,
                f"not an Agent Runtime app (its name does not start with {AGENT_APP_PREFIX}); "
                "name it with --app to import it",
            )
            continue
        not_ready = _app_not_ready(app)
        if not_ready:
            report.add("skipped", subject, not_ready)
            continue
        chosen.append(app)
    return chosen


def _app_not_ready(app: App) -> str:
    """Why an app cannot take turns now ("" when it can): no URL, compute not ACTIVE, or the app
    not RUNNING."""
    if not app.url:
        return "not deployed: the app has no URL yet"
    compute = app.compute_status.state if app.compute_status else None
    if _enum_value(compute) != "ACTIVE":
        message = app.compute_status.message if app.compute_status else ""
        return f"its compute is {_enum_value(compute)}" + (f": {message}" if message else "")
    state = app.app_status.state if app.app_status else None
    if _enum_value(state) != "RUNNING":
        message = app.app_status.message if app.app_status else ""
        return f"the app is {_enum_value(state)}" + (f": {message}" if message else "")
    return ""


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


class _AppsUnavailable(Exception):
    """The workspace answers, but not with its apps: skip the apps, keep the endpoints."""


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
    feedback = ", feedback model" if agent.feedback_entity_name else ""
    _write(
        {"model_name": agent.model_name, "model_version": agent.model_version},
        existing,
        desired,
        report,
        subject=agent.label,
        where=where,
        created=f"{where}{feedback}",
    )


def _app_fields(
    app: App, host: str, profile: str, workspace_page: str, keep_auth: bool
) -> dict[str, Any]:
    name = app.name or ""
    fields: dict[str, Any] = {
        "endpoint_name": name,
        "served_entity_name": name,
        # Deployment.clean would append the path to the bare URL too; given here, an unchanged
        # app compares equal to its saved row.
        "query_endpoint": (app.url or "").rstrip("/") + INVOCATION_PATH[EndpointKind.AGENT_RUNTIME],
        "endpoint_url": f"{host}/apps/{name}{workspace_page}",
        "endpoint_kind": EndpointKind.AGENT_RUNTIME,
    }
    if not keep_auth:
        fields.update(
            auth_kind=AuthKind.DATABRICKS,
            auth_env_var="",
            databricks_profile=profile,
            oauth_client_id="",
        )
    return fields


def _sync_app(app: App, host: str, profile: str, workspace_page: str, report: SyncReport) -> None:
    """One app's row, keyed by app_model_name(host, name) and APP_MODEL_VERSION. An admin's
    choice of databricks_m2m auth is kept; otherwise the row authenticates as the sync did, which
    Apps refuse when that is a personal access token: the app is then skipped, not saved."""
    name = app.name or ""
    subject = f"apps/{name}"
    identity = {"model_name": app_model_name(host, name), "model_version": APP_MODEL_VERSION}
    existing = Deployment.objects.filter(**identity).first()
    keep_auth = existing is not None and existing.auth_kind == AuthKind.DATABRICKS_M2M
    if not keep_auth and databricks_auth.profile_uses_pat(profile):
        report.add(
            "skipped",
            subject,
            "these credentials are a personal access token, which Databricks Apps refuse; "
            "sync with OAuth (a service principal or a `databricks auth login` profile)",
        )
        return
    desired = _app_fields(app, host, profile, workspace_page, keep_auth)
    where = f"Agent Runtime app at {app.url}"
    _write(
        {**identity, "display_name": name} if existing is None else identity,
        existing,
        desired,
        report,
        subject=subject,
        where=where,
        created=where,
    )


def _write(
    identity: dict[str, Any],
    existing: Deployment | None,
    desired: dict[str, Any],
    report: SyncReport,
    *,
    subject: str,
    where: str,
    created: str,
) -> None:
    """Create the row, or update the desired fields that differ, and report which."""
    try:
        if existing is None:
            _create(identity, desired, report.dry_run)
            report.add("created", subject, created)
            return
        changed = [name for name, value in desired.items() if getattr(existing, name) != value]
        if not changed:
            report.add("unchanged", subject, where)
            return
        _update(existing, {name: desired[name] for name in changed}, report.dry_run)
        report.add("updated", subject, "changed " + ", ".join(changed))
    except ValidationError as exc:
        report.add("invalid", subject, _validation_summary(exc))


def _create(identity: dict[str, Any], fields: dict[str, Any], dry_run: bool) -> None:
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


def _disable_missing(
    rows: Iterable[Deployment],
    served: set[tuple[str, str]],
    report: SyncReport,
    *,
    subject: Callable[[Deployment], str],
    reason: str,
) -> None:
    """Disable the rows (enabled ones of one workspace and one kind, as the caller chose them)
    whose (model_name, model_version) the workspace no longer has."""
    for row in rows:
        if (row.model_name, row.model_version) in served:
            continue
        if not report.dry_run:
            services.deployment_set_enabled(deployment=row, enabled=False)
        report.add("disabled", subject(row), reason)
