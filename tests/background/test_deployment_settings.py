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
