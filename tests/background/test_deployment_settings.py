"""Saving a deployment of a Databricks Agent Runtime app or a LongRunningAgentServer: what it
needs, and a personal access token refused at save time with the reason."""

import pytest

from agents.models import Deployment
from agents.models.deployment import PAT_REFUSED

LIST_URL = "/api/v1/deployments/"
APP = {
    "model_name": "apps.workspace.agent_bricks_support",
    "model_version": "1",
    "query_endpoint": "https://agent-bricks-support-1234.aws.databricksapps.com",
    "endpoint_kind": "agent_runtime",
}


@pytest.fixture
def admin_api(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    return api_client


def test_a_pat_from_the_environment_is_refused_for_an_app(admin_api):
    response = admin_api.post(
        LIST_URL,
        {**APP, "auth_kind": "env_token", "auth_env_var": "DATABRICKS_TOKEN"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["auth_kind"] == [PAT_REFUSED]
    assert "personal access token is refused" in PAT_REFUSED
    assert not Deployment.objects.exists()


def test_a_profile_holding_a_pat_is_refused_and_an_oauth_profile_is_saved(
    admin_api, tmp_path, monkeypatch
):
    config = tmp_path / "databrickscfg"
    config.write_text(
        "[pat]\nhost = https://ws.cloud.databricks.com\ntoken = dapi0123\n\n"
        "[sso]\nhost = https://ws.cloud.databricks.com\nauth_type = databricks-cli\n"
    )
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    refused = admin_api.post(
        LIST_URL, {**APP, "auth_kind": "databricks", "databricks_profile": "pat"}, format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["databricks_profile"] == [PAT_REFUSED]
    assert not Deployment.objects.exists()

    saved = admin_api.post(
        LIST_URL, {**APP, "auth_kind": "databricks", "databricks_profile": "sso"}, format="json"
    )
    assert saved.status_code == 201, saved.json()
    # A bare app URL is asked at the documented route.
    assert saved.json()["query_endpoint"] == f"{APP['query_endpoint']}/api/invocations"


def test_the_environment_with_a_pat_is_refused(admin_api, monkeypatch):
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi0123")
    monkeypatch.delenv("DATABRICKS_CLIENT_ID", raising=False)
    response = admin_api.post(LIST_URL, {**APP, "auth_kind": "databricks"}, format="json")
    assert response.status_code == 400
    assert response.json()["databricks_profile"] == [PAT_REFUSED]


def test_a_service_principal_needs_its_host_client_and_secret_variable(admin_api):
    response = admin_api.post(LIST_URL, {**APP, "auth_kind": "databricks_m2m"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) >= {"databricks_host", "oauth_client_id", "auth_env_var"}
    response = admin_api.post(
        LIST_URL,
        {
            **APP,
            "auth_kind": "databricks_m2m",
            "databricks_host": "https://ws.cloud.databricks.com",
            "oauth_client_id": "6f1c2e0a-client",
            "auth_env_var": "REVIEWAPP_SP_SECRET",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["oauth_client_id"] == "6f1c2e0a-client"


def test_no_credentials_at_all_are_refused_for_an_app(admin_api):
    response = admin_api.post(LIST_URL, {**APP, "auth_kind": "none"}, format="json")
    assert response.status_code == 400
    assert "OAuth" in response.json()["auth_kind"][0]


def test_a_long_running_server_url_gets_its_responses_route(admin_api):
    response = admin_api.post(
        LIST_URL,
        {
            **APP,
            "endpoint_kind": "mlflow_long_running",
            "query_endpoint": "http://127.0.0.1:8000/",
            "mlflow_tracking_uri": "http://127.0.0.1:5000",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["query_endpoint"] == "http://127.0.0.1:8000/responses"
    assert response.json()["feedback_destination"]["sink"] == "mlflow_assessments"


def test_a_profile_that_turns_out_to_hold_a_pat_is_refused_when_sending(db, tmp_path, monkeypatch):
    """Saved with an OAuth profile whose file was later changed to a token: the turn is refused
    before anything is sent, with the reason."""
    from agents import databricks_auth
    from agents.auth import AgentAuthError, auth_headers

    config = tmp_path / "databrickscfg"
    config.write_text("[later-pat]\nhost = https://ws.cloud.databricks.com\ntoken = dapi0123\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    databricks_auth.forget_configs()
    deployment = Deployment.objects.create(
        **{**APP, "query_endpoint": APP["query_endpoint"] + "/api/invocations"},
        auth_kind="databricks",
        databricks_profile="later-pat",
    )
    with pytest.raises(AgentAuthError, match="personal access token") as refused:
        auth_headers(deployment)
    assert "dapi0123" not in str(refused.value)
    databricks_auth.forget_configs()


def test_a_pat_in_the_default_profile_is_refused(admin_api, tmp_path, monkeypatch):
    config = tmp_path / "databrickscfg"
    config.write_text("[DEFAULT]\nhost = https://ws.cloud.databricks.com\ntoken = dapi0123\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    response = admin_api.post(
        LIST_URL, {**APP, "auth_kind": "databricks", "databricks_profile": "DEFAULT"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["databricks_profile"] == [PAT_REFUSED]


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("agent_runtime", "https://agent-bricks-x.aws.databricksapps.com/invocations"),
        ("mlflow_long_running", "http://127.0.0.1:8000/invocations"),
    ],
)
def test_a_url_whose_runs_cannot_be_read_back_is_refused(admin_api, kind, url):
    fields = {**APP, "endpoint_kind": kind, "query_endpoint": url, "auth_kind": "databricks_m2m"}
    fields |= {"databricks_host": "https://ws.example.com", "oauth_client_id": "c"}
    fields |= {"auth_env_var": "SP_SECRET"}
    response = admin_api.post(LIST_URL, fields, format="json")
    assert response.status_code == 400
    assert "its runs are read there" in response.json()["query_endpoint"][0]


def test_a_send_tried_again_names_the_same_runtime_run():
    from agents.background.protocols import protocol_for

    runtime = protocol_for("agent_runtime")
    body = {"session_id": "c", "input": {"messages": []}, "stream": True}
    first, first_id = runtime.start_body(body, stream=True, key="7:key-1")
    _again, again_id = runtime.start_body(body, stream=True, key="7:key-1")
    _other, other_id = runtime.start_body(body, stream=True, key="7:key-2")
    assert first_id == again_id != other_id
    # The runtime serves a run's events apart, so it is started without `stream`.
    assert first == {
        "id": first_id,
        "session_id": "c",
        "input": {"messages": []},
        "background": True,
    }


def test_a_manifest_declares_an_app_with_a_service_principal_and_refuses_a_pat(db, admin_user):
    from django.core.exceptions import ValidationError

    from manifests import selectors as manifest_selectors
    from manifests import services as manifests

    app = {
        "name": "support agent",
        "model_name": APP["model_name"],
        "model_version": "1",
        "endpoint_kind": "agent_runtime",
        "query_endpoint": APP["query_endpoint"],
        "auth_kind": "env_token",
        "auth_env_var": "DATABRICKS_TOKEN",
    }
    with pytest.raises(ValidationError) as refused:
        manifests.manifest_apply(user=admin_user, manifest={"version": 1, "deployments": [app]})
    assert PAT_REFUSED in refused.value.message_dict["deployments[0].auth_kind"]
    assert not Deployment.objects.exists()

    app |= {
        "auth_kind": "databricks_m2m",
        "auth_env_var": "SUPPORT_SP_SECRET",
        "databricks_host": "https://ws.cloud.databricks.com",
        "oauth_client_id": "6f1c2e0a-client",
    }
    manifests.manifest_apply(user=admin_user, manifest={"version": 1, "deployments": [app]})
    exported = manifest_selectors.manifest_export()["deployments"][0]
    assert exported["oauth_client_id"] == "6f1c2e0a-client"
    assert exported["query_endpoint"].endswith("/api/invocations")
    assert (
        manifests.manifest_apply(user=admin_user, manifest=manifest_selectors.manifest_export())
        == []
    )
