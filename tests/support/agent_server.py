"""A real MLflow AgentServer as a subprocess, tracing to the suite's real `mlflow server`.

Register with `pytest_plugins = ["tests.support.agent_server"]` (or import the fixture). Fixture:
- `mlflow_agent_server` (session): uvicorn on 127.0.0.1 serving `tests.support.agent_server_app`
  (MLflow's `AgentServer("ResponsesAgent")`: POST /invocations and /responses, GET /health and
  /agent/info), its traces logged to the `mlflow_server` fixture's tracking server, in the
  experiment `AgentServerProcess.experiment`.

The AgentServer answers first and exports the trace afterwards (here within EXPORT_INTERVAL_MS;
MLflow's default is 5 s), so a trace id it returns is not on the tracking server for a moment:
`AgentServerProcess.wait_for_trace` waits for it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import REPO_ROOT
from tests.support.mlflow_server import QUIET_ENV, MlflowServer, _clean_env, wait_for_trace
from tests.support.servers import ServerProcess, free_port, running_on_free_port, spawn_logged

# Importing full mlflow and FastAPI takes a few seconds on an idle 2-core machine.
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
TRACE_WAIT_S = 30.0
EXPORT_INTERVAL_MS = 300
EXPERIMENT = "review-app-agent-server"
APP = "tests.support.agent_server_app:app"
RETURN_TRACE_HEADERS = {"x-mlflow-return-trace-id": "true"}


class AgentServerStartError(RuntimeError):
    pass


@dataclass
class AgentServerProcess(ServerProcess):
    name = "AgentServer"
    start_error = AgentServerStartError

    url: str  # e.g. "http://127.0.0.1:54321"
    tracking_uri: str
    experiment: str
    process: subprocess.Popen
    log_path: Path

    @property
    def invocations_url(self) -> str:
        return f"{self.url}/invocations"

    @property
    def responses_url(self) -> str:
        return f"{self.url}/responses"

    def post(self, path: str, body: dict, **kwargs) -> httpx.Response:
        """One call asking for the trace id, as the app makes it."""
        return httpx.post(
            f"{self.url}{path}", json=body, headers=RETURN_TRACE_HEADERS, timeout=60, **kwargs
        )

    def wait_for_trace(self, trace_id: str, spans: int, timeout_s: float = TRACE_WAIT_S):
        """The trace (`mlflow.entities.Trace`) once the tracking server has `spans` of its spans."""
        return wait_for_trace(self.tracking_uri, trace_id, spans, timeout_s, self.check_alive)


def _start(workdir: Path, tracking_uri: str, attempt: int) -> AgentServerProcess:
    port = free_port()
    log_path = workdir / f"agent-server-{attempt}.log"
    argv = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)]
    env = _clean_env(
        {
            **QUIET_ENV,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
            # MLflow exports finished traces in batches, by default every 5 s: the app copes
            # (the trace panel says "not available yet"), but tests need not wait that long.
            "MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS": str(EXPORT_INTERVAL_MS),
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    process = spawn_logged(argv, env=env, log_path=log_path)
    return AgentServerProcess(
        url=f"http://127.0.0.1:{port}",
        tracking_uri=tracking_uri,
        experiment=EXPERIMENT,
        process=process,
        log_path=log_path,
    )


def _wait_for_health(server: AgentServerProcess) -> None:
    server.require_health(f"{server.url}/health", STARTUP_TIMEOUT_S)


@contextlib.contextmanager
def run_agent_server(tracking: MlflowServer) -> Iterator[AgentServerProcess]:
    """Start the AgentServer on a free port, tracing to `tracking`; stop it on exit."""
    tracking.check_alive()
    with (
        tempfile.TemporaryDirectory(prefix="agent-server-") as tmp,
        running_on_free_port(
            lambda attempt: _start(Path(tmp), tracking.url, attempt),
            _wait_for_health,
            AgentServerProcess.log,
            AgentServerStartError,
        ) as server,
    ):
        yield server


@pytest.fixture(scope="session")
def mlflow_agent_server(mlflow_server: MlflowServer) -> Iterator[AgentServerProcess]:
    with run_agent_server(mlflow_server) as server:
        yield server
