import mlflow
import pytest


@pytest.fixture
def mlflow_client(monkeypatch, mlflow_server):
    """MLflow's fluent client in this process reads from the test server, then is put back."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server.url)
    yield
    mlflow.set_tracking_uri(previous)
