"""A real LongRunningAgentServer (databricks-ai-bridge) as a subprocess, on local PostgreSQL,
tracing to the suite's real `mlflow server`.

Fixture (import it, or list this module in `pytest_plugins` after tests.support.mlflow_server):
- `long_running_server` (session): uvicorn on 127.0.0.1 serving
  `tests.support.long_running_server_app`: MLflow's AgentServer routes plus background mode
  (POST /responses with "background": true) and GET /responses/{id}[?stream=true&starting_after=N],
  its traces logged to the `mlflow_server` fixture's tracking server in `experiment`.

The server keeps background runs in a Lakebase database. Lakebase's connection is the one part
replaced (see the app module): the engine points at this machine's PostgreSQL, database
DATABASE (created if missing), reached like the suite's own DATABASE_URL when that is
PostgreSQL, else as postgres@127.0.0.1:5432. PostgreSQL down: skipped outside CI, failed under
CI=true.

Test-only helpers: `stats()`, `reset()`, `cut_next_stream(after)` (the next SSE response is
dropped after `after` `data:` frames) and `wait_for_trace()` (traces are exported after the
answer, as with AgentServerProcess).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.support import REPO_ROOT
from tests.support.agent_server import EXPORT_INTERVAL_MS, RETURN_TRACE_HEADERS
from tests.support.mlflow_server import QUIET_ENV, MlflowServer, _clean_env, wait_for_trace
from tests.support.servers import ServerProcess, free_port, running_on_free_port, spawn_logged

STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
TRACE_WAIT_S = 30.0
EXPERIMENT = "review-app-long-running-server"
APP = "tests.support.long_running_server_app:app"
DATABASE = "reviewapp_long_running"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class LongRunningServerStartError(RuntimeError):
    pass


@dataclass
class LongRunningServer(ServerProcess):
    name = "LongRunningAgentServer"
    start_error = LongRunningServerStartError

    url: str  # e.g. "http://127.0.0.1:54321"
    tracking_uri: str
    experiment: str
    database_url: str  # SQLAlchemy URL of the server's "Lakebase" database
    process: subprocess.Popen
    log_path: Path

    @property
    def responses_url(self) -> str:
        return f"{self.url}/responses"

    def post(self, body: dict, **kwargs: Any) -> httpx.Response:
        """POST /responses asking for the trace id, as the app makes it."""
        return httpx.post(
            self.responses_url, json=body, headers=RETURN_TRACE_HEADERS, timeout=60, **kwargs
        )

    def stats(self) -> dict[str, Any]:
        """{"runs": {response id: runs of the agent function in background mode},
        "foreground_runs": n (sync and plain streaming calls), "requests": [[method, path with
        query], ...] (not /_test/ ones), "streams_cut": n}."""
        return self._test("GET", "stats")

    def reset(self) -> None:
        """Zero the counters and the request log, disarm a cut. Stored responses stay."""
        self._test("POST", "reset")

    def cut_next_stream(self, after: int) -> None:
        """Drop the next SSE response (POST stream or GET ?stream=true) after `after` frames."""
        self._test("POST", "cut-next-stream", params={"after": after})

    def _test(self, method: str, route: str, **kwargs: Any) -> dict[str, Any]:
        self.check_alive()
        response = httpx.request(method, f"{self.url}/_test/{route}", timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

    def wait_for_trace(self, trace_id: str, spans: int = 1, timeout_s: float = TRACE_WAIT_S):
        """The trace (`mlflow.entities.Trace`) once the tracking server has `spans` of its spans."""
        return wait_for_trace(self.tracking_uri, trace_id, spans, timeout_s, self.check_alive)


def _server_url() -> str:
    """libpq URL of the PostgreSQL server to use, on its maintenance database."""
    configured = os.environ.get("DATABASE_URL", "")
    if configured.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(configured)
        return urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
    return DEFAULT_SERVER_URL


def ensure_database() -> str:
    """Create DATABASE if missing; its SQLAlchemy (psycopg 3) URL. Skips, or fails under CI,
    when PostgreSQL is not reachable."""
    import psycopg

    server_url = _server_url()
    try:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=3) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE])
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
    except psycopg.OperationalError as exc:
        what = f"PostgreSQL at {urlsplit(server_url).hostname} (for the LongRunningAgentServer)"
        if IN_CI:
            pytest.fail(f"{what} is not reachable, and CI=true requires it: {exc}")
        pytest.skip(f"{what} is not reachable; start it to run this test: {exc}")
    parts = urlsplit(server_url)
    return urlunsplit(("postgresql+psycopg", parts.netloc, f"/{DATABASE}", "", ""))


def _start(workdir: Path, tracking_uri: str, database_url: str, attempt: int) -> LongRunningServer:
    port = free_port()
    log_path = workdir / f"long-running-server-{attempt}.log"
    argv = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)]
    env = _clean_env(
        {
            **QUIET_ENV,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
            "MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS": str(EXPORT_INTERVAL_MS),
            "LONG_RUNNING_DATABASE_URL": database_url,
            "LAKEBASE_INSTANCE_NAME": "local-postgres",  # turns background mode on
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    env = {k: v for k, v in env.items() if not k.startswith("LAKEBASE_AUTOSCALING_")}
    process = spawn_logged(argv, env=env, log_path=log_path)
    return LongRunningServer(
        url=f"http://127.0.0.1:{port}",
        tracking_uri=tracking_uri,
        experiment=EXPERIMENT,
        database_url=database_url,
        process=process,
        log_path=log_path,
    )


def _wait_for_health(server: LongRunningServer) -> None:
    server.require_health(f"{server.url}/health", STARTUP_TIMEOUT_S)


@contextlib.contextmanager
def run_long_running_server(tracking: MlflowServer) -> Iterator[LongRunningServer]:
    """Start the server on a free port, tracing to `tracking`; stop it on exit."""
    tracking.check_alive()
    database_url = ensure_database()
    with (
        tempfile.TemporaryDirectory(prefix="long-running-server-") as tmp,
        running_on_free_port(
            lambda attempt: _start(Path(tmp), tracking.url, database_url, attempt),
            _wait_for_health,
            LongRunningServer.log,
            LongRunningServerStartError,
        ) as server,
    ):
        yield server


@pytest.fixture(scope="session")
def long_running_server(mlflow_server: MlflowServer) -> Iterator[LongRunningServer]:
    with run_long_running_server(mlflow_server) as server:
        yield server
