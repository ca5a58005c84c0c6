"""Authentication references resolve to headers at call time; secrets never reach messages."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents import databricks_auth
from agents.auth import AgentAuthError, auth_headers
from agents.models import AuthKind, Deployment


def deployment(**fields) -> Deployment:
    return Deployment(
        model_name="main.a.bot",
        model_version="1",
        query_endpoint="https://h.example.com/x",
        **fields,
    )


def test_no_auth_sends_no_header():
    assert auth_headers(deployment()) == {}


def test_a_token_is_read_from_the_named_environment_variable(monkeypatch):
    monkeypatch.setenv("BOT_TOKEN", "dapi-abc")
    headers = auth_headers(deployment(auth_kind=AuthKind.ENV_TOKEN, auth_env_var="BOT_TOKEN"))
    assert headers == {"Authorization": "Bearer dapi-abc"}


def test_a_missing_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    with pytest.raises(AgentAuthError, match="BOT_TOKEN is not set on the server"):
        auth_headers(deployment(auth_kind=AuthKind.ENV_TOKEN, auth_env_var="BOT_TOKEN"))


@pytest.fixture
def workspace_host():
    """A local stand-in for a workspace host: the SDK probes its metadata route, which 404s here
    (as on older workspaces), so the SDK falls back to the profile's explicit settings."""

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(autouse=True)
def fresh_sdk_configs():
    databricks_auth.forget_configs()
    yield
    databricks_auth.forget_configs()


def test_a_databricks_profile_is_resolved_by_the_sdk(monkeypatch, tmp_path, workspace_host):
    config = tmp_path / "databrickscfg"
    config.write_text(f"[review]\nhost = {workspace_host}\ntoken = dapi-from-profile\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    headers = auth_headers(deployment(auth_kind=AuthKind.DATABRICKS, databricks_profile="review"))
    assert headers["Authorization"] == "Bearer dapi-from-profile"


def test_an_unknown_profile_is_a_clear_error_without_secrets(monkeypatch, tmp_path, workspace_host):
    config = tmp_path / "databrickscfg"
    config.write_text(f"[other]\nhost = {workspace_host}\ntoken = dapi-secret\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    with pytest.raises(AgentAuthError) as caught:
        auth_headers(deployment(auth_kind=AuthKind.DATABRICKS, databricks_profile="missing"))
    assert "profile 'missing'" in str(caught.value)
    assert "dapi-secret" not in str(caught.value)
