"""`manage.py sync_deployments` against a local fake workspace, through the real databricks-sdk:
Model Serving agent endpoints (the workspace's apps: test_sync_apps.py)."""

import copy
import time

import pytest
from django.core.management.base import CommandError

from agents.models import AgentSchema, AuthKind, Deployment, EndpointKind, FeedbackSink
from tests.support.fake_databricks import (
    WORKSPACE_ID,
    agent_endpoint,
    served_entity,
)
from tests.support.servers import free_port
from tests.support.workspace_sync import IMPORTED, LEGACY, RAG, TRIAGE, row, rows, sync

pytestmark = pytest.mark.django_db


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
