"""`manage.py sync_deployments` against a local fake workspace, through the real databricks-sdk."""

import copy
import time
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.models import AgentSchema, AuthKind, Deployment, EndpointKind, FeedbackSink
from agents.models.deployment import FEEDBACK_SINK_AUTO
from tests.support.fake_databricks import (
    WORKSPACE_ID,
    FakeDatabricksWorkspace,
    agent_endpoint,
    databricks_app,
    isolate_sdk_environment,
    served_entity,
    standard_endpoints,
)
from tests.support.servers import free_port

pytestmark = pytest.mark.django_db

RAG = "agents_main-agents-rag_bot"
TRIAGE = "agents_main-support-triage"
LEGACY = "agents_main-legacy-chat_bot"
IMPORTED = {
    ("main.agents.rag_bot", "2"),
    ("main.agents.rag_bot", "3"),
    ("main.support.triage", "1"),
    ("main.legacy.chat_bot", "5"),
}


@pytest.fixture
def sdk_env(monkeypatch, tmp_path):
    isolate_sdk_environment(monkeypatch, tmp_path)
    return monkeypatch


@pytest.fixture
def workspace(sdk_env):
    with FakeDatabricksWorkspace() as fake:
        fake.add(*standard_endpoints())
        fake.list_without_config.add(TRIAGE)
        yield fake


@pytest.fixture
def pat_env(sdk_env, workspace):
    sdk_env.setenv("DATABRICKS_HOST", workspace.url)
    sdk_env.setenv("DATABRICKS_TOKEN", workspace.token)
    return workspace


def sync(*args: str) -> str:
    out = StringIO()
    call_command("sync_deployments", *args, stdout=out)
    return out.getvalue()


def rows() -> set[tuple[str, str]]:
    return set(Deployment.objects.values_list("model_name", "model_version"))


def row(model_name: str, version: str) -> Deployment:
    return Deployment.objects.get(model_name=model_name, model_version=version)


def test_pat_import_creates_a_row_per_served_model_version_with_derived_urls(pat_env):
    url = pat_env.url
    output = sync("-v", "2")

    assert rows() == IMPORTED
    current = row("main.agents.rag_bot", "3")
    assert current.endpoint_name == RAG
    assert current.served_entity_name == "main-agents-rag_bot_3"
    assert current.query_endpoint == (
        f"{url}/serving-endpoints/{RAG}/served-models/main-agents-rag_bot_3/invocations"
    )
    assert current.endpoint_url == f"{url}/ml/endpoints/{RAG}/?o={WORKSPACE_ID}"
    assert current.endpoint_kind == EndpointKind.DATABRICKS
    assert current.agent_schema == AgentSchema.CHAT_AGENT
    assert (current.auth_kind, current.databricks_profile) == (AuthKind.DATABRICKS, "")
    assert current.feedback_sink == FeedbackSink.DATABRICKS
    assert current.feedback_endpoint == (
        f"{url}/serving-endpoints/{RAG}/served-models/feedback/invocations"
    )
    assert current.display_name == "main.agents.rag_bot@3"
    # The version at 0% traffic keeps its own URL, so its turns never reach version 3.
    assert row("main.agents.rag_bot", "2").query_endpoint.endswith(
        "/served-models/main-agents-rag_bot_2/invocations"
    )
    triage = row("main.support.triage", "1")
    assert triage.agent_schema == AgentSchema.RESPONSES
    assert triage.feedback_sink == FeedbackSink.NONE
    assert row("main.legacy.chat_bot", "5").agent_schema == AgentSchema.CHAT_COMPLETIONS

    # list() gave no config for the triage endpoint, so it was read on its own.
    assert f"/api/2.0/serving-endpoints/{TRIAGE}" in pat_env.paths()
    assert "created       main.agents.rag_bot@3  " in output
    assert "ignored       churn-scorer  task (none) is not an agent task" in output
    assert output.rstrip().endswith(
        f"{url}: 4 created, 0 updated, 0 unchanged, 0 skipped, 0 invalid, 0 disabled; "
        "3 endpoint(s) are not agents (llm/v1/chat: 1, llm/v1/embeddings: 1, no task: 1)."
    )
    assert pat_env.token not in output


def test_running_again_changes_nothing_and_keeps_admin_edits(pat_env, admin_user):
    sync()
    edited = row("main.agents.rag_bot", "3")
    edited.display_name = "RAG bot (prod)"
    edited.reviewer_instructions = "Ask about **billing**."
    edited.default_custom_inputs = {"top_k": 2}
    edited.enabled = False
    edited.streaming = True
    edited.request_timeout_s = 300
    edited.save()
    edited.allowed_users.add(admin_user)
    saved_at = row("main.agents.rag_bot", "3").updated_at

    output = sync()

    assert "0 created, 0 updated, 4 unchanged" in output
    kept = row("main.agents.rag_bot", "3")
    assert kept.updated_at == saved_at
    assert kept.display_name == "RAG bot (prod)"
    assert kept.reviewer_instructions == "Ask about **billing**."
    assert kept.default_custom_inputs == {"top_k": 2}
    assert (kept.enabled, kept.streaming, kept.request_timeout_s) == (False, True, 300)
    assert list(kept.allowed_users.all()) == [admin_user]


def test_changed_workspace_data_updates_only_the_fields_the_workspace_owns(pat_env):
    sync()
    legacy = row("main.legacy.chat_bot", "5")
    legacy.display_name = "Legacy bot"
    legacy.save()
    # Redeployed: a new entity name and the ChatAgent task; the rag endpoint loses its feedback
    # model and gains version 4 at 100%.
    pat_env.add(
        agent_endpoint(
            LEGACY,
            "agent/v2/chat",
            [(served_entity("main.legacy.chat_bot", "5", name="chat-bot-v5"), 100)],
        ),
        agent_endpoint(
            RAG,
            "agent/v2/chat",
            [
                (served_entity("main.agents.rag_bot", "2"), 0),
                (served_entity("main.agents.rag_bot", "3"), 0),
                (served_entity("main.agents.rag_bot", "4"), 100),
            ],
        ),
    )

    output = sync()

    assert (
        "updated       main.legacy.chat_bot@5  changed served_entity_name, query_endpoint, "
        "agent_schema" in output
    )
    assert "created       main.agents.rag_bot@4" in output
    assert "1 created, 3 updated, 1 unchanged" in output
    legacy = row("main.legacy.chat_bot", "5")
    assert legacy.display_name == "Legacy bot"
    assert legacy.agent_schema == AgentSchema.CHAT_AGENT
    assert legacy.query_endpoint.endswith(f"/{LEGACY}/served-models/chat-bot-v5/invocations")
    old = row("main.agents.rag_bot", "3")
    assert (old.feedback_sink, old.feedback_endpoint) == (FeedbackSink.NONE, "")


def test_an_admin_choice_of_mlflow_feedback_is_kept(pat_env):
    sync()
    chosen = row("main.agents.rag_bot", "3")
    chosen.feedback_sink = FeedbackSink.MLFLOW
    chosen.feedback_endpoint = "https://mlflow.example.com"
    chosen.save()

    sync()

    kept = row("main.agents.rag_bot", "3")
    assert (kept.feedback_sink, kept.feedback_endpoint) == (
        FeedbackSink.MLFLOW,
        "https://mlflow.example.com",
    )


def test_dry_run_prints_the_changes_and_writes_nothing(pat_env):
    output = sync("--dry-run")
    assert rows() == set()
    assert output.count("would create  ") == 4
    assert output.splitlines()[-1].startswith(
        f"Dry run, nothing written. {pat_env.url}: 4 created, 0 updated, 0 unchanged"
    )

    sync()
    pat_env.endpoints[LEGACY]["task"] = "agent/v1/responses"
    output = sync("--dry-run", "--disable-missing")
    assert "would update  main.legacy.chat_bot@5  changed agent_schema" in output
    assert row("main.legacy.chat_bot", "5").agent_schema == AgentSchema.CHAT_COMPLETIONS


def test_oauth_m2m_gets_a_token_from_the_workspace_token_route(sdk_env, workspace):
    sdk_env.setenv("DATABRICKS_HOST", workspace.url)
    sdk_env.setenv("DATABRICKS_CLIENT_ID", workspace.client_id)
    sdk_env.setenv("DATABRICKS_CLIENT_SECRET", workspace.client_secret)

    output = sync()

    assert rows() == IMPORTED
    assert "/oidc/v1/token" in workspace.paths("POST")
    listing = next(r for r in workspace.requests if r.path == "/api/2.0/serving-endpoints")
    assert listing.authorization.removeprefix("Bearer ") in workspace.issued_tokens
    assert workspace.client_secret not in output


def test_a_profile_file_is_used_and_stored_on_the_rows(sdk_env, workspace, tmp_path):
    config = tmp_path / "databrickscfg"
    config.write_text(f"[review]\nhost = {workspace.url}\ntoken = {workspace.token}\n")
    sdk_env.setenv("DATABRICKS_CONFIG_FILE", str(config))

    sync("--profile", "review")

    assert rows() == IMPORTED
    assert set(Deployment.objects.values_list("databricks_profile", flat=True)) == {"review"}


def test_an_unknown_profile_is_a_clear_error(sdk_env, workspace, tmp_path):
    config = tmp_path / "databrickscfg"
    config.write_text(f"[review]\nhost = {workspace.url}\ntoken = {workspace.token}\n")
    sdk_env.setenv("DATABRICKS_CONFIG_FILE", str(config))

    with pytest.raises(CommandError, match="no usable credentials in profile 'staging'") as caught:
        sync("--profile", "staging")

    assert workspace.token not in str(caught.value)


def test_a_refused_token_is_a_clear_error_exiting_non_zero_with_no_rows(sdk_env, workspace):
    sdk_env.setenv("DATABRICKS_HOST", workspace.url)
    sdk_env.setenv("DATABRICKS_TOKEN", "dapi-not-a-valid-token")

    with pytest.raises(CommandError) as caught:
        sync()

    # manage.py prints a CommandError on stderr and exits with its returncode.
    assert caught.value.returncode == 1
    assert str(caught.value).startswith(
        f"{workspace.url} refused the credentials (pat auth): Invalid access token."
    )
    assert "dapi-not-a-valid-token" not in str(caught.value)
    assert rows() == set()


def test_a_refused_client_secret_is_a_clear_error(sdk_env, workspace):
    sdk_env.setenv("DATABRICKS_HOST", workspace.url)
    sdk_env.setenv("DATABRICKS_CLIENT_ID", workspace.client_id)
    sdk_env.setenv("DATABRICKS_CLIENT_SECRET", "wrong-secret-value")

    with pytest.raises(CommandError, match="invalid_client") as caught:
        sync()

    assert "could not authenticate" in str(caught.value)
    assert "wrong-secret-value" not in str(caught.value)
    assert rows() == set()


def test_missing_credentials_say_where_they_were_looked_for(sdk_env, workspace):
    sdk_env.setenv("DATABRICKS_HOST", workspace.url)
    with pytest.raises(CommandError, match="no usable credentials in the DATABRICKS_\\* env"):
        sync()


def test_an_unreachable_host_is_a_clear_error(sdk_env):
    sdk_env.setenv("DATABRICKS_HOST", f"http://127.0.0.1:{free_port()}")
    sdk_env.setenv("DATABRICKS_TOKEN", "dapi-anything")
    started = time.monotonic()

    with pytest.raises(CommandError, match=r"Cannot reach http://127\.0\.0\.1:\d+ within 1 s"):
        sync("--timeout", "1")

    assert time.monotonic() - started < 20
    assert rows() == set()


def test_disable_missing_disables_only_this_workspaces_vanished_rows(pat_env, deployment_factory):
    sync()
    elsewhere = deployment_factory()  # another host's row is not this workspace's to disable
    del pat_env.endpoints[LEGACY]

    dry = sync("--disable-missing", "--dry-run")
    assert "would disable main.legacy.chat_bot@5" in dry
    assert row("main.legacy.chat_bot", "5").enabled

    output = sync("--disable-missing")

    assert "disabled      main.legacy.chat_bot@5" in output
    assert not row("main.legacy.chat_bot", "5").enabled
    assert row("main.agents.rag_bot", "2").enabled
    elsewhere.refresh_from_db()
    assert elsewhere.enabled


def test_a_row_of_another_host_is_not_taken_over(pat_env, deployment_factory):
    other = deployment_factory(model_name="main.agents.rag_bot", model_version="3")

    output = sync()

    assert (
        "skipped       main.agents.rag_bot@3  an existing row points at "
        "https://workspace.example.com; not taking it over" in output
    )
    other.refresh_from_db()
    assert other.query_endpoint.startswith("https://workspace.example.com/")


def test_a_model_version_served_twice_gets_one_row(pat_env):
    twin = copy.deepcopy(pat_env.endpoints[TRIAGE])
    twin["name"] = "zz-triage-canary"
    pat_env.add(twin)

    output = sync()

    assert "is also served by agents_main-support-triage, which was kept" in output
    assert row("main.support.triage", "1").endpoint_name == TRIAGE


def test_a_row_that_does_not_validate_is_reported_and_the_others_saved(pat_env):
    pat_env.add(
        agent_endpoint("agents_bad", "agent/v1/chat", [(served_entity("main.a.b c", "1"), 100)])
    )

    with pytest.raises(CommandError, match="1 deployment\\(s\\) did not validate"):
        sync()

    assert rows() == IMPORTED


# --- Databricks Apps on Agent Runtime ------------------------------------------------------------

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
