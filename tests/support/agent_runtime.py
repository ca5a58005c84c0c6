"""A real Databricks Agent Runtime (agentbricks' DurableAgentServer) as a subprocess, behind a fake
Databricks Apps ingress, on a server that also plays the workspace's OAuth endpoints.

Fixture (import it, or list this module in `pytest_plugins`):
- `agent_runtime_server` (session): uvicorn on 127.0.0.1 serving `tests.support.agent_runtime_app`.
  Its `.url` is both the app's URL (POST /api/invocations ...) and the workspace host a
  databricks-sdk `Config(host=url, client_id=..., client_secret=..., auth_type="oauth-m2m")`
  gets tokens from. The service principal's secret is also put in `os.environ[secret_env_var]`,
  since the app reads a deployment's secret from an environment variable it names.

The runtime is the library's, unchanged; only what Databricks runs around an app is faked (see
the app module's docstring). Test-only helpers: `stats()`, `reset()`, `cut_next_stream(after)`
(the next SSE response is dropped after `after` frames), `set_token_lifetime(s)`.

Two things a client meets here that it meets in production too: sync calls take at least about
a second (the runtime polls its store every second for the result), and SSE `id:`s are the
store's sequence numbers, shared by all invocations (a new invocation's first id is not 1).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import REPO_ROOT
from tests.support.mlflow_server import QUIET_ENV, _clean_env
from tests.support.servers import ServerProcess, free_port, running_on_free_port, spawn_logged

# Importing mlflow, FastAPI and agentbricks takes a few seconds on an idle 2-core machine.
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
APP = "tests.support.agent_runtime_app:app"
CLIENT_ID = "reviewapp-test-sp"
SECRET_ENV_VAR = "REVIEWAPP_TEST_SP_SECRET"
DEFAULT_TOKEN_LIFETIME_S = 3600


class AgentRuntimeStartError(RuntimeError):
    pass


@dataclass
class AgentRuntimeServer(ServerProcess):
    name = "Agent Runtime"
    start_error = AgentRuntimeStartError

    url: str  # e.g. "http://127.0.0.1:54321": the app and the workspace host
    client_id: str
    client_secret: str
    secret_env_var: str  # set in os.environ to client_secret while the fixture lives
    process: subprocess.Popen
    log_path: Path

    @property
    def invocations_url(self) -> str:
        return f"{self.url}/api/invocations"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oidc/v1/token"

    def token(self) -> str:
        """A fresh OAuth access token from the fake workspace (client credentials)."""
        response = httpx.post(
            self.token_url,
            data={"grant_type": "client_credentials", "scope": "all-apis"},
            auth=(self.client_id, self.client_secret),
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def stats(self) -> dict[str, Any]:
        """{"tokens_issued": n, "invocations": {id: runs of the invoke hook}, "requests":
        [[method, path with query, "oauth"|"pat"|"none"], ...] (not /_test/ ones; "oauth" is
        any bearer token that is not a PAT, valid or not), "streams_cut": n, "token_lifetime_s"}."""
        return self._test("GET", "stats")

    def reset(self) -> None:
        """Zero the counters and the request log, disarm a cut, restore the token lifetime.
        Tokens already issued stay valid; invocations stay in the runtime's store."""
        self._test("POST", "reset")

    def cut_next_stream(self, after: int) -> None:
        """Drop the next SSE response (POST stream or GET events) after `after` `id:` frames."""
        self._test("POST", "cut-next-stream", params={"after": after})

    def set_token_lifetime(self, seconds: int) -> None:
        """`expires_in` of tokens issued from now on; 0 makes them expire at once."""
        self._test("POST", "token-lifetime", params={"seconds": seconds})

    def _test(self, method: str, route: str, **kwargs: Any) -> dict[str, Any]:
        self.check_alive()
        response = httpx.request(method, f"{self.url}/_test/{route}", timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()


def _start(workdir: Path, secret: str, attempt: int) -> AgentRuntimeServer:
    port = free_port()
    log_path = workdir / f"agent-runtime-{attempt}.log"
    argv = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)]
    env = _clean_env(
        {
            **QUIET_ENV,
            "FAKE_WORKSPACE_CLIENT_ID": CLIENT_ID,
            "FAKE_WORKSPACE_CLIENT_SECRET": secret,
            "FAKE_WORKSPACE_TOKEN_LIFETIME_S": str(DEFAULT_TOKEN_LIFETIME_S),
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    # agentbricks reads these; a developer's shell must not point the test runtime elsewhere.
    env = {k: v for k, v in env.items() if not k.startswith(("AGENTBRICKS_", "LAKEBASE_"))}
    process = spawn_logged(argv, env=env, log_path=log_path)
    return AgentRuntimeServer(
        url=f"http://127.0.0.1:{port}",
        client_id=CLIENT_ID,
        client_secret=secret,
        secret_env_var=SECRET_ENV_VAR,
        process=process,
        log_path=log_path,
    )


def _wait_for_health(server: AgentRuntimeServer) -> None:
    server.require_health(f"{server.url}/_test/health", STARTUP_TIMEOUT_S)


@contextlib.contextmanager
def run_agent_runtime() -> Iterator[AgentRuntimeServer]:
    """Start the runtime on a free port with a new client secret, exported in
    `os.environ[SECRET_ENV_VAR]` while it runs; stop it on exit."""
    secret = f"test-secret-{secrets.token_hex(8)}"
    previous = os.environ.get(SECRET_ENV_VAR)
    os.environ[SECRET_ENV_VAR] = secret
    try:
        with (
            tempfile.TemporaryDirectory(prefix="agent-runtime-") as tmp,
            running_on_free_port(
                lambda attempt: _start(Path(tmp), secret, attempt),
                _wait_for_health,
                AgentRuntimeServer.log,
                AgentRuntimeStartError,
            ) as server,
        ):
            yield server
    finally:
        if previous is None:
            os.environ.pop(SECRET_ENV_VAR, None)
        else:
            os.environ[SECRET_ENV_VAR] = previous


@pytest.fixture(scope="session")
def agent_runtime_server() -> Iterator[AgentRuntimeServer]:
    with run_agent_runtime() as server:
        yield server
