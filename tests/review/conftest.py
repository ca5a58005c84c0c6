import mlflow
import pytest

from tests.review.sessions_support import make_reviewer


@pytest.fixture
def bot(deployment_factory):
    return deployment_factory(display_name="Bot")


@pytest.fixture
def bob(django_user_model):
    return make_reviewer(django_user_model, "bob")


@pytest.fixture
def agent_server_bot(deployment_factory, mlflow_server):
    """A deployment whose traces live on the suite's MLflow server."""
    return deployment_factory(
        display_name="Support bot",
        endpoint_kind="mlflow_agent_server",
        mlflow_tracking_uri=mlflow_server.url,
    )


@pytest.fixture
def mlflow_client(monkeypatch, mlflow_server):
    """MLflow's fluent client in this process reads from the test server, then is put back."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server.url)
    yield
    mlflow.set_tracking_uri(previous)
