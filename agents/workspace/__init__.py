"""Import a Databricks workspace's agents as Deployments (`sync_deployments`): its Model
Serving agent endpoints (endpoints.py) and its Agent Runtime apps (apps.py), written through
the deployment services (rows.py), with the workspace's failures said in words (calls.py)."""

from collections.abc import Collection

from databricks.sdk import WorkspaceClient

from agents.workspace.apps import agent_apps, disable_vanished_apps, list_apps, sync_app
from agents.workspace.calls import WorkspaceError, workspace_connect
from agents.workspace.endpoints import disable_vanished_endpoints, served_agents, sync_endpoint
from agents.workspace.rows import SyncReport

__all__ = ["SyncReport", "WorkspaceError", "workspace_connect", "workspace_sync"]


def workspace_sync(
    *,
    client: WorkspaceClient,
    profile: str = "",
    dry_run: bool = False,
    disable_missing: bool = False,
    apps: Collection[str] = (),
) -> SyncReport:
    """Create or update a Deployment per served agent model version and per Agent Runtime app
    (`agent-bricks-*`, plus the apps named in `apps`).

    Raises WorkspaceError (before any write) when the endpoints or the apps cannot be listed; a
    workspace without the Apps API, or credentials not allowed to list apps, only skip the apps.
    A row that does not validate is reported as `invalid` and not saved; the others still are.
    """
    config = client.config
    host = config.host.rstrip("/")
    report = SyncReport(host=host, dry_run=dry_run)
    agents = served_agents(client, report)
    listed_apps = list_apps(client, report)
    # A profile named by DATABRICKS_CONFIG_PROFILE is stored too, so chat turns need not rely
    # on the server having the same variable set.
    stored_profile = profile or config.profile or ""
    workspace_page = f"?o={config.workspace_id}" if config.workspace_id else ""
    for agent in agents:
        sync_endpoint(agent, host, stored_profile, workspace_page, report)
    if listed_apps is not None:
        for app in agent_apps(listed_apps, set(apps), report):
            sync_app(app, host, stored_profile, workspace_page, report)
    if disable_missing:
        disable_vanished_endpoints(host, agents, report)
        if listed_apps is not None:
            disable_vanished_apps(host, listed_apps, report)
    return report
