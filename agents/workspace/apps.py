"""The workspace's Databricks Apps that are Agent Runtime agents, as Deployments with
`endpoint_kind` `agent_runtime` (turns run in the background, agents/background/).

Agents made with the Agent Bricks CLI are deployed as apps named `agent-bricks-<name>`
(AGENT_APP_PREFIX); other apps are web apps and are left out unless named with `--app`. An app
has no Unity Catalog model, so its row is keyed by a name this module derives (app_model_name):
`apps.<workspace host>.<app name>`, version 1, unique per (host, app name). Its turns go to the
app's URL + `/api/invocations` and need a Databricks OAuth token (Apps refuse a personal access
token), so an app is skipped when the sync's own credentials are a PAT.
"""

import re
from typing import Any
from urllib.parse import urlsplit

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, PermissionDenied
from databricks.sdk.service.apps import App

from agents import databricks_auth
from agents.models import AuthKind, Deployment, EndpointKind
from agents.models.deployment import INVOCATION_PATH
from agents.workspace.calls import AppsUnavailable, call, enum_value, safe_message
from agents.workspace.rows import SyncReport, disable_missing, write_row

# `agentbricks deploy` names an Agent Runtime app `agent-bricks-<name>` (Databricks docs,
# "Deploy an agent to Agent Runtime"); the app's agent answers at INVOCATION_PATH.
AGENT_APP_PREFIX = "agent-bricks-"


APP_MODEL_CATALOG = "apps"


APP_MODEL_VERSION = "1"


def app_model_name(host: str, app_name: str) -> str:
    """The model_name an app's row is keyed by: `apps.<host>.<app name>`, the host's netloc and
    the app name with every character a Unity Catalog name segment cannot hold (`.`, `:`, `-`)
    turned into `_` (app names are lowercase letters, digits and `-`, so no two collide). With
    version APP_MODEL_VERSION it passes the catalog.schema.model validator; with a blank app name
    it is the prefix of every app row of that host."""
    netloc = re.sub(r"[^a-z0-9_-]", "_", urlsplit(host).netloc.lower())
    return f"{APP_MODEL_CATALOG}.{netloc}.{re.sub(r'[^A-Za-z0-9_]', '_', app_name)}"


def list_apps(client: WorkspaceClient, report: SyncReport) -> list[App] | None:
    """Every app of the workspace (databricks-sdk follows next_page_token), or None when the
    workspace has no Apps API or these credentials may not list apps (reported as skipped)."""

    def fetch() -> list[App]:
        try:
            return list(client.apps.list())
        except (NotFound, PermissionDenied) as exc:
            raise AppsUnavailable(safe_message(exc)) from None

    try:
        return call(client, fetch)
    except AppsUnavailable as exc:
        report.add("skipped", "apps", f"cannot list the workspace's apps: {exc}")
        return None


def agent_apps(listed: list[App], named: set[str], report: SyncReport) -> list[App]:
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
    if enum_value(compute) != "ACTIVE":
        message = app.compute_status.message if app.compute_status else ""
        return f"its compute is {enum_value(compute)}" + (f": {message}" if message else "")
    state = app.app_status.state if app.app_status else None
    if enum_value(state) != "RUNNING":
        message = app.app_status.message if app.app_status else ""
        return f"the app is {enum_value(state)}" + (f": {message}" if message else "")
    return ""


def sync_app(app: App, host: str, profile: str, workspace_page: str, report: SyncReport) -> None:
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
    write_row(
        {**identity, "display_name": name} if existing is None else identity,
        existing,
        desired,
        report,
        subject=subject,
        where=where,
        created=where,
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


def disable_vanished_apps(host: str, listed: list[App], report: SyncReport) -> None:
    """Every app the workspace still has counts, agent or not, ready or not: only an app that is
    gone disables its row. Rows outside this host's apps.<host>. names are not ours."""
    disable_missing(
        Deployment.objects.filter(
            endpoint_kind=EndpointKind.AGENT_RUNTIME,
            enabled=True,
            model_name__startswith=app_model_name(host, ""),
        ).order_by("model_name", "model_version"),
        {(app_model_name(host, app.name or ""), APP_MODEL_VERSION) for app in listed},
        report,
        subject=lambda row: f"apps/{row.endpoint_name}",
        reason="the workspace has no app of this name any more",
    )
