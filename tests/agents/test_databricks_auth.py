"""An imported deployment's chat turns authenticate through agents.auth with databricks-sdk, and
the workspace accepts the headers at the imported URL."""

from io import StringIO

import httpx
import pytest
from django.core.management import call_command

from agents import databricks_auth
from agents.auth import auth_headers
from agents.models import Deployment
from tests.support.fake_databricks import (
    FakeDatabricksWorkspace,
    isolate_sdk_environment,
    standard_endpoints,
)

pytestmark = pytest.mark.django_db
CHAT_TURN = {"messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def workspace(monkeypatch, tmp_path):
    isolate_sdk_environment(monkeypatch, tmp_path)
    # Config objects are cached per profile; one made for another test's host must not be used.
    databricks_auth.forget_configs()
    with FakeDatabricksWorkspace() as fake:
        fake.add(*standard_endpoints())
        yield fake
    databricks_auth.forget_configs()


def imported(*args: str) -> Deployment:
    call_command("sync_deployments", *args, stdout=StringIO())
    return Deployment.objects.get(model_name="main.agents.rag_bot", model_version="3")


def post_turn(workspace: FakeDatabricksWorkspace, deployment: Deployment) -> httpx.Response:
    headers = auth_headers(deployment)
    response = httpx.post(deployment.query_endpoint, json=CHAT_TURN, headers=headers, timeout=10)
    assert workspace.requests[-1].path == (
        "/serving-endpoints/agents_main-agents-rag_bot/served-models/main-agents-rag_bot_3/"
        "invocations"
    )
    return response


def test_a_pat_from_the_environment_reaches_the_imported_url(workspace, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", workspace.token)
    deployment = imported()

    assert auth_headers(deployment)["Authorization"] == f"Bearer {workspace.token}"
    response = post_turn(workspace, deployment)
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"


def test_an_oauth_service_principal_token_is_accepted(workspace, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", workspace.url)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", workspace.client_id)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", workspace.client_secret)
    deployment = imported()

    token = auth_headers(deployment)["Authorization"].removeprefix("Bearer ")
    assert token in workspace.issued_tokens
    assert post_turn(workspace, deployment).status_code == 200


def test_the_stored_profile_authenticates_chat_turns(workspace, monkeypatch, tmp_path):
    config = tmp_path / "databrickscfg"
    config.write_text(f"[review]\nhost = {workspace.url}\ntoken = {workspace.token}\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    deployment = imported("--profile", "review")

    assert deployment.databricks_profile == "review"
    assert post_turn(workspace, deployment).status_code == 200


def test_a_token_revoked_after_the_import_is_refused_by_the_workspace(workspace, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", workspace.token)
    deployment = imported()
    workspace.token = "dapi-rotated"

    response = post_turn(workspace, deployment)
    assert response.status_code == 403
    assert response.json() == {"error_code": 403, "message": "Invalid access token."}
