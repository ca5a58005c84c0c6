"""`manage.py sync_deployments` imports a workspace's Agent Runtime apps (Databricks Apps named
`agent-bricks-*`, or with `--app`), against a local fake workspace through the real
databricks-sdk."""

from urllib.parse import urlsplit

import pytest

from agents.models import AgentSchema, AuthKind, Deployment, EndpointKind
from agents.models.deployment import FEEDBACK_SINK_AUTO
from tests.support.fake_databricks import (
    WORKSPACE_ID,
    FakeDatabricksWorkspace,
    databricks_app,
)
from tests.support.workspace_sync import IMPORTED, LEGACY, row, rows, sync

pytestmark = pytest.mark.django_db

SUPPORT_APP = "agent-bricks-support"
CUSTOM_APP = "custom-rag-agent"


@pytest.fixture
def m2m_env(sdk_env, workspace):
    """Databricks OAuth for a service principal: what an app's row may authenticate with."""
    sdk_env.setenv("DATABRICKS_HOST", workspace.url)
    sdk_env.setenv("DATABRICKS_CLIENT_ID", workspace.client_id)
    sdk_env.setenv("DATABRICKS_CLIENT_SECRET", workspace.client_secret)
    workspace.add_apps(
        databricks_app(SUPPORT_APP),
        databricks_app("sales-dashboard"),  # a web app, not an agent
        databricks_app(CUSTOM_APP),  # an agent deployed as an app by hand
    )
    return workspace


def app_key(workspace: FakeDatabricksWorkspace, name: str) -> tuple[str, str]:
    port = urlsplit(workspace.url).port
    return (f"apps.127_0_0_1_{port}.{name.replace('-', '_')}", "1")


def app_row(workspace: FakeDatabricksWorkspace, name: str) -> Deployment:
    model_name, version = app_key(workspace, name)
    return row(model_name, version)


def test_an_agent_bricks_app_is_imported_as_an_agent_runtime_deployment(m2m_env):
    url = m2m_env.url
    output = sync("-v", "2")

    assert rows() == IMPORTED | {app_key(m2m_env, SUPPORT_APP)}
    app = app_row(m2m_env, SUPPORT_APP)
    app_url = m2m_env.apps[SUPPORT_APP]["url"]
    assert app.model_name == f"apps.127_0_0_1_{urlsplit(url).port}.agent_bricks_support"
    assert (app.model_version, app.display_name) == ("1", SUPPORT_APP)
    assert (app.endpoint_name, app.served_entity_name) == (SUPPORT_APP, SUPPORT_APP)
    assert app.endpoint_kind == EndpointKind.AGENT_RUNTIME
    assert app.query_endpoint == f"{app_url}/api/invocations"
    assert app.endpoint_url == f"{url}/apps/{SUPPORT_APP}?o={WORKSPACE_ID}"
    assert (app.auth_kind, app.databricks_profile, app.auth_env_var) == (
        AuthKind.DATABRICKS,
        "",
        "",
    )
    assert (app.agent_schema, app.feedback_sink) == (AgentSchema.AUTO, FEEDBACK_SINK_AUTO)
    assert app.enabled
    app.full_clean()

    assert f"created       apps/{SUPPORT_APP}  Agent Runtime app at {app_url}" in output
    assert "ignored       apps/sales-dashboard  not an Agent Runtime app" in output
    assert f"apps/{CUSTOM_APP}  not an Agent Runtime app" in output
    assert output.rstrip().endswith(
        f"{url}: 5 created, 0 updated, 0 unchanged, 0 skipped, 0 invalid, 0 disabled; "
        "3 endpoint(s) are not agents (llm/v1/chat: 1, llm/v1/embeddings: 1, no task: 1); "
        "2 app(s) are not Agent Runtime agents (--app NAME imports one)."
    )
    listing = next(r for r in m2m_env.requests if r.path == "/api/2.0/apps")
    assert listing.authorization.removeprefix("Bearer ") in m2m_env.issued_tokens


def test_the_app_option_imports_a_named_app(m2m_env):
    output = sync("--app", CUSTOM_APP, "--app", "no-such-app")

    assert app_row(m2m_env, CUSTOM_APP).query_endpoint == (
        f"{m2m_env.apps[CUSTOM_APP]['url']}/api/invocations"
    )
    assert app_row(m2m_env, SUPPORT_APP).endpoint_kind == EndpointKind.AGENT_RUNTIME
    assert "sales-dashboard" not in {name for name, _ in rows()}
    assert f"created       apps/{CUSTOM_APP}  " in output
    assert "skipped       apps/no-such-app  the workspace has no app of this name" in output
    assert "6 created, 0 updated, 0 unchanged, 1 skipped" in output
    assert "1 app(s) are not Agent Runtime agents" in output


def test_an_app_not_deployed_or_not_running_is_skipped_with_the_reason(m2m_env):
    m2m_env.apps.clear()
    m2m_env.add_apps(
        databricks_app("agent-bricks-new", url=""),
        databricks_app("agent-bricks-paused", compute="STOPPED"),
        databricks_app("agent-bricks-broken", state="CRASHED", message="App crashed on start."),
        databricks_app("agent-bricks-rollout", state="DEPLOYING"),
    )

    output = sync()

    assert rows() == IMPORTED
    assert "skipped       apps/agent-bricks-new  not deployed: the app has no URL yet" in output
    assert (
        "skipped       apps/agent-bricks-paused  its compute is STOPPED: App compute is stopped."
        in output
    )
    assert "skipped       apps/agent-bricks-broken  the app is CRASHED: App crashed on start." in (
        output
    )
    assert "skipped       apps/agent-bricks-rollout  the app is DEPLOYING" in output
    assert "4 created, 0 updated, 0 unchanged, 4 skipped" in output


def test_syncing_apps_again_changes_nothing_and_follows_a_new_app_url(m2m_env):
    sync()
    edited = app_row(m2m_env, SUPPORT_APP)
    edited.display_name = "Support agent"
    edited.request_timeout_s = 300
    edited.save()
    saved_at = app_row(m2m_env, SUPPORT_APP).updated_at

    output = sync()

    assert "0 created, 0 updated, 5 unchanged" in output
    assert f"unchanged     apps/{SUPPORT_APP}  Agent Runtime app at " in output
    kept = app_row(m2m_env, SUPPORT_APP)
    assert kept.updated_at == saved_at
    assert (kept.display_name, kept.request_timeout_s) == ("Support agent", 300)

    m2m_env.apps[SUPPORT_APP]["url"] = "https://agent-bricks-support-2.aws.databricksapps.com"
    output = sync()

    assert f"updated       apps/{SUPPORT_APP}  changed query_endpoint" in output
    moved = app_row(m2m_env, SUPPORT_APP)
    assert moved.query_endpoint == (
        "https://agent-bricks-support-2.aws.databricksapps.com/api/invocations"
    )
    assert moved.display_name == "Support agent"


def test_a_removed_app_is_disabled_and_apps_and_endpoints_keep_to_their_own(
    m2m_env, deployment_factory
):
    sync("--app", CUSTOM_APP)
    # Rows of the same kind made by hand, or by a sync of another workspace, are not ours.
    by_hand = deployment_factory(
        model_name="main.agents.by_hand",
        endpoint_kind=EndpointKind.AGENT_RUNTIME,
        query_endpoint="https://by-hand.aws.databricksapps.com/api/invocations",
        auth_kind=AuthKind.DATABRICKS,
    )
    m2m_env.apps[CUSTOM_APP]["compute_status"]["state"] = "STOPPED"  # stopped, not gone
    del m2m_env.apps[SUPPORT_APP]
    del m2m_env.endpoints[LEGACY]

    dry = sync("--disable-missing", "--dry-run")
    assert f"would disable apps/{SUPPORT_APP}  the workspace has no app of this name" in dry
    assert app_row(m2m_env, SUPPORT_APP).enabled

    output = sync("--disable-missing")

    assert f"disabled      apps/{SUPPORT_APP}  the workspace has no app of this name" in output
    assert "disabled      main.legacy.chat_bot@5" in output
    assert "2 disabled" in output
    assert not app_row(m2m_env, SUPPORT_APP).enabled
    assert not row("main.legacy.chat_bot", "5").enabled
    assert app_row(m2m_env, CUSTOM_APP).enabled
    assert row("main.agents.rag_bot", "3").enabled
    by_hand.refresh_from_db()
    assert by_hand.enabled


def test_an_app_dry_run_writes_nothing(m2m_env):
    output = sync("--dry-run")

    assert rows() == set()
    assert f"would create  apps/{SUPPORT_APP}  Agent Runtime app at " in output
    assert output.splitlines()[-1].startswith(
        f"Dry run, nothing written. {m2m_env.url}: 5 created, 0 updated"
    )

    sync()
    saved = app_row(m2m_env, SUPPORT_APP).query_endpoint
    m2m_env.apps[SUPPORT_APP]["url"] = "https://moved.aws.databricksapps.com"
    output = sync("--dry-run")
    assert f"would update  apps/{SUPPORT_APP}  changed query_endpoint" in output
    assert app_row(m2m_env, SUPPORT_APP).query_endpoint == saved


def test_apps_are_listed_across_pages(m2m_env):
    m2m_env.apps.clear()
    m2m_env.add_apps(*(databricks_app(f"agent-bricks-bot-{n}") for n in range(4)))
    m2m_env.add_apps(databricks_app("sales-dashboard"))
    m2m_env.apps_page_size = 2

    output = sync()

    assert {app_key(m2m_env, f"agent-bricks-bot-{n}") for n in range(4)} <= rows()
    assert "8 created" in output
    pages = [r.query for r in m2m_env.requests if r.path == "/api/2.0/apps"]
    assert pages == ["", "page_token=2", "page_token=4"]


def test_a_personal_access_token_skips_the_apps_and_keeps_a_chosen_service_principal(
    pat_env, monkeypatch
):
    pat_env.add_apps(databricks_app(SUPPORT_APP), databricks_app("agent-bricks-triage"))

    output = sync()

    assert rows() == IMPORTED
    assert (
        f"skipped       apps/{SUPPORT_APP}  these credentials are a personal access token, "
        "which Databricks Apps refuse" in output
    )
    assert "4 created, 0 updated, 0 unchanged, 2 skipped, 0 invalid" in output

    # An admin who gave an app's row a service principal keeps it, whoever syncs.
    model_name, version = app_key(pat_env, SUPPORT_APP)
    monkeypatch.setenv("APP_SP_SECRET", "sp-secret")
    Deployment.objects.create(
        model_name=model_name,
        model_version=version,
        endpoint_name=SUPPORT_APP,
        served_entity_name=SUPPORT_APP,
        query_endpoint="https://old.aws.databricksapps.com/api/invocations",
        endpoint_kind=EndpointKind.AGENT_RUNTIME,
        auth_kind=AuthKind.DATABRICKS_M2M,
        databricks_host=pat_env.url,
        oauth_client_id="sp-client",
        auth_env_var="APP_SP_SECRET",
    )

    output = sync()

    assert f"updated       apps/{SUPPORT_APP}  changed query_endpoint, endpoint_url" in output
    kept = row(model_name, version)
    assert (kept.auth_kind, kept.oauth_client_id, kept.auth_env_var) == (
        AuthKind.DATABRICKS_M2M,
        "sp-client",
        "APP_SP_SECRET",
    )
    assert kept.query_endpoint == f"{pat_env.apps[SUPPORT_APP]['url']}/api/invocations"


def test_a_workspace_without_apps_still_syncs_its_endpoints(m2m_env):
    sync()
    m2m_env.apps_api = False
    del m2m_env.apps[SUPPORT_APP]

    output = sync("--disable-missing")

    assert "skipped       apps  cannot list the workspace's apps: No API." in output
    assert "0 created, 0 updated, 4 unchanged, 1 skipped, 0 invalid, 0 disabled" in output
    assert app_row(m2m_env, SUPPORT_APP).enabled
