"""The demo agent as a real subprocess, for tests: `run_demo_agent(**flags)` and fixtures.

Register with `pytest_plugins = ["tests.support.demo_agent"]`. Fixtures:
- `demo_agent_server` (session): one agent with default knobs, shared by the whole run;
- `demo_agent` (function): that agent, with its knobs reset and its feedback log emptied.

This module does not import the `demo_agent` package: importing it sets MLflow's serving-mode
environment variables, which must stay out of the test process.
"""

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import free_port, running_on_free_port, stop_process, wait_for_health

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# The knobs of an agent started without flags; `reset()` returns to them.
DEFAULT_KNOBS: dict[str, Any] = {
    "latency_ms": 0,
    "cold_start_s": 0.0,
    "error_rate": 0.0,
    "malformed_rate": 0.0,
    "feedback_error_rate": 0.0,
    "stream_chunk_delay_ms": 15,
}
DEFAULT_ENDPOINT = "demo-endpoint"
# The agent picks the schema from the endpoint's name (demo_agent/schemas.py); one name each.
SCHEMA_ENDPOINTS = {
    "chat_completions": DEFAULT_ENDPOINT,
    "chat_agent": "demo-chat-agent",
    "responses": "demo-responses",
    "legacy": "demo-legacy",
}


class DemoAgentStartError(RuntimeError):
    pass


@dataclass
class DemoAgent:
    """A running demo agent: where it is, and helpers for its test-only routes."""

    url: str  # e.g. "http://127.0.0.1:54321"
    feedback_log: Path
    process: subprocess.Popen
    stderr_path: Path
    token: str | None = None
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.url, headers=self.auth_headers(), timeout=30)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def invocations_url(self, endpoint: str = DEFAULT_ENDPOINT) -> str:
        return f"{self.url}/serving-endpoints/{endpoint}/invocations"

    def feedback_url(self, endpoint: str = DEFAULT_ENDPOINT) -> str:
        return f"{self.url}/serving-endpoints/{endpoint}/served-models/feedback/invocations"

    def records(self, endpoint: str = DEFAULT_ENDPOINT) -> list[dict[str, Any]]:
        """Feedback lines logged for `endpoint`, in arrival order."""
        response = self._client.get(f"/serving-endpoints/{endpoint}/served-models/feedback/records")
        response.raise_for_status()
        return response.json()["records"]

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at run time (latency_ms, cold_start_s, *_rate, stream_chunk_delay_ms);
        returns all knobs."""
        response = self._client.post("/_demo/config", json=knobs)
        if response.status_code != 200:
            raise ValueError(f"demo agent refused {knobs}: {response.text}")
        return response.json()

    def clear_feedback(self) -> None:
        self._client.post("/_demo/feedback/clear").raise_for_status()

    def reset(self) -> None:
        self.configure(**DEFAULT_KNOBS)
        self.clear_feedback()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise DemoAgentStartError(
                f"the demo agent exited with code {self.process.returncode}:\n{self.stderr()}"
            )

    def stop(self) -> None:
        self._client.close()
        stop_process(self.process, STOP_TIMEOUT_S)


def flag_args(flags: dict[str, Any]) -> list[str]:
    """{"latency_ms": 5, "token": "t"} -> ["--latency-ms", "5", "--token", "t"]; None: left out;
    True: a switch without a value (`no_traces=True` -> ["--no-traces"])."""
    args: list[str] = []
    for name, value in flags.items():
        if value is True:
            args.append(f"--{name.replace('_', '-')}")
        elif value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def _clean_env(extra_env: dict[str, str] | None) -> dict[str, str]:
    # DEMO_AGENT_* in the developer's shell must not change what a test's agent does.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_AGENT_")}
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **(extra_env or {})}


def _wait_for_health(agent: DemoAgent, timeout_s: float) -> None:
    if wait_for_health(f"{agent.url}/health", agent.check_alive, timeout_s) is None:
        raise DemoAgentStartError(
            f"the demo agent did not answer /health within {timeout_s:.0f} s:\n{agent.stderr()}"
        )


def _start(
    workdir: Path, attempt: int, flags: dict[str, Any], extra_env: dict[str, str] | None
) -> DemoAgent:
    port = free_port()
    feedback_log = Path(flags.pop("feedback_log", workdir / "feedback.jsonl"))
    stderr_path = workdir / f"stderr-{attempt}.log"
    argv = [sys.executable, "-m", "demo_agent", "--port", str(port)]
    argv += ["--feedback-log", str(feedback_log), *flag_args(flags)]
    with stderr_path.open("wb") as stderr:
        # A file, not a pipe: nobody reads a pipe while tests run, and a full one would block.
        process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=_clean_env(extra_env), stdout=stderr, stderr=subprocess.STDOUT
        )
    return DemoAgent(
        url=f"http://127.0.0.1:{port}",
        feedback_log=feedback_log,
        process=process,
        stderr_path=stderr_path,
        token=flags.get("token"),
    )


@contextlib.contextmanager
def run_demo_agent(*, extra_env: dict[str, str] | None = None, **flags: Any) -> Iterator[DemoAgent]:
    """Start `python -m demo_agent` with these flags (latency_ms=..., token=..., ...).

    The agent gets a free port and its own feedback log in a temporary directory, unless
    feedback_log= is given. DEMO_AGENT_* variables of this process are not passed on; give
    extra_env= to set some. It is stopped on exit.
    """
    with (
        tempfile.TemporaryDirectory(prefix="demo-agent-") as tmp,
        running_on_free_port(
            lambda attempt: _start(Path(tmp), attempt, dict(flags), extra_env),
            lambda agent: _wait_for_health(agent, STARTUP_TIMEOUT_S),
            DemoAgent.stderr,
            DemoAgentStartError,
        ) as agent,
    ):
        yield agent


@pytest.fixture(scope="session")
def demo_agent_server() -> Iterator[DemoAgent]:
    with run_demo_agent() as agent:
        yield agent


@pytest.fixture
def demo_agent(demo_agent_server: DemoAgent) -> DemoAgent:
    demo_agent_server.check_alive()
    demo_agent_server.reset()
    return demo_agent_server
