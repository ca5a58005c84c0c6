"""A real MLflow tracking server as a subprocess, and real traces on it, for the sink tests.

Register with `pytest_plugins = ["tests.support.mlflow_server"]`. Fixture:
- `mlflow_server` (session): `mlflow server` on 127.0.0.1 with a SQLite store in a temporary
  directory, one worker and no job runner; stopped at the end of the run.

`MlflowServer.make_trace()` records a real trace on it with the MLflow library in a child
process (`python -m tests.support.mlflow_server trace URL EXPERIMENT`), so this process's MLflow
globals (tracking URI, active experiment, trace buffers) stay untouched. `MlflowServer.trace()`
reads one back with an `MlflowClient` bound to the server.

Full `mlflow` is a pinned dev dependency (requirements-dev.txt), so nothing here is skipped: a
server that does not start fails the tests that use it, with its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO_ROOT
from tests.support.servers import free_port, running_on_free_port, stop_process, wait_for_health

# About 5 s on an idle 2-core machine (most of it importing mlflow); CI runners can be slower.
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
CHILD_TIMEOUT_S = 120.0
MLFLOW = Path(sys.executable).parent / "mlflow"
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    # Empty: else MLflow fetches an LLM price catalog over HTTP for spans with token usage.
    "MLFLOW_MODEL_CATALOG_URI": "",
    "PYTHONUNBUFFERED": "1",
}
# The server's huey job runner (scorers, trace rollups) is two more processes nobody here uses.
SERVER_ENV = {**QUIET_ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
TRACE_QUESTION = "What is MLflow tracing?"
TRACE_ANSWER = "MLflow tracing records each step of an agent as a span [1]."


class MlflowServerStartError(RuntimeError):
    pass


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    # MLFLOW_* of the developer's shell (a tracking URI, an experiment, serving mode) and
    # Databricks credentials must not reach a test's server or trace maker.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "DATABRICKS_"))
        and k not in ("IS_IN_DB_MODEL_SERVING_ENV", "ENABLE_MLFLOW_TRACING")
    }
    return {**env, **extra}


@dataclass
class MlflowServer:
    url: str  # e.g. "http://127.0.0.1:54321"
    process: subprocess.Popen
    log_path: Path
    started_in_s: float = 0.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise MlflowServerStartError(
                f"mlflow server exited with code {self.process.returncode}:\n{self.log()[-6000:]}"
            )

    def make_trace(self, experiment: str = "review-app-tests") -> dict[str, Any]:
        """A real trace logged to this server (AGENT > RETRIEVER with 3 documents, CHAT_MODEL),
        as `Trace.to_dict()`: what a turn stores in RequestLog.trace."""
        self.check_alive()
        return make_trace(self.url, experiment)

    def trace(self, trace_id: str):
        """The trace as the server has it now (`mlflow.entities.Trace`), with its assessments."""
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.url).get_trace(trace_id)

    def stop(self) -> None:
        # The `mlflow server` CLI forwards SIGTERM to its uvicorn child and waits for it.
        stop_process(self.process, STOP_TIMEOUT_S)
        # The server ran in a session of its own: end whatever is left of it (its uvicorn child).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def _start(workdir: Path, attempt: int) -> MlflowServer:
    port = free_port()
    log_path = workdir / f"server-{attempt}.log"
    argv = [
        str(MLFLOW),
        "server",
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}"),
        *("--default-artifact-root", str(workdir / "artifacts")),
        *("--workers", "1"),
    ]
    with log_path.open("wb") as log:
        # A file, not a pipe: nobody reads a pipe while tests run, and a full one would block.
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=_clean_env(SERVER_ENV),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return MlflowServer(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)


def _wait_for_health(server: MlflowServer, timeout_s: float) -> None:
    took = wait_for_health(f"{server.url}/health", server.check_alive, timeout_s)
    if took is None:
        raise MlflowServerStartError(
            f"mlflow server did not answer {server.url}/health within {timeout_s:.0f} s:\n"
            f"{server.log()[-6000:]}"
        )
    server.started_in_s = took


@contextlib.contextmanager
def run_mlflow_server() -> Iterator[MlflowServer]:
    """Start `mlflow server` on a free port with its own SQLite store; stop it on exit."""
    if not MLFLOW.exists():
        raise MlflowServerStartError(
            f"{MLFLOW} is missing: install the dev requirements (pip install -r "
            "requirements-dev.txt -c constraints.txt), which pin the full mlflow."
        )
    with (
        tempfile.TemporaryDirectory(prefix="mlflow-server-") as tmp,
        running_on_free_port(
            lambda attempt: _start(Path(tmp), attempt),
            lambda server: _wait_for_health(server, STARTUP_TIMEOUT_S),
            MlflowServer.log,
            MlflowServerStartError,
        ) as server,
    ):
        yield server


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[MlflowServer]:
    with run_mlflow_server() as server:
        yield server


# --- Real traces, made in a child process --------------------------------------------------------


def make_trace(tracking_uri: str, experiment: str) -> dict[str, Any]:
    """Run `_child_make_trace` in a child process and return the trace dict it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.mlflow_server", "trace", tracking_uri, experiment],
        cwd=REPO_ROOT,
        env=_clean_env({**QUIET_ENV, "MLFLOW_TRACKING_URI": tracking_uri}),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"Making an MLflow trace on {tracking_uri} failed:\n{done.stderr[-4000:]}"
        )
    # MLflow logs to stderr; the trace is the last line of stdout.
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child_make_trace(tracking_uri: str, experiment: str) -> dict[str, Any]:
    """In the child: an agent answering with one retrieval and one chat-model call, traced by
    MLflow to the tracking server, then read back from it."""
    import mlflow
    from mlflow.entities import Document, SpanType

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    documents = [
        Document(
            page_content=text,
            metadata={"doc_uri": f"https://docs.example.com/tracing/{n}.html", "chunk_id": str(n)},
        )
        for n, text in enumerate(
            [
                "MLflow Tracing records the inputs, outputs and timing of each step as a span.",
                "A RETRIEVER span's outputs are the documents the agent retrieved.",
                "Traces are logged to the active experiment of the tracking server.",
            ]
        )
    ]
    messages = [{"role": "user", "content": TRACE_QUESTION}]
    with mlflow.start_span(name="rag_agent", span_type=SpanType.AGENT) as root:
        root.set_inputs({"messages": messages})
        with mlflow.start_span(name="vector_search", span_type=SpanType.RETRIEVER) as retriever:
            retriever.set_inputs({"query": TRACE_QUESTION, "num_results": len(documents)})
            retriever.set_outputs(documents)
        with mlflow.start_span(name="chat_model", span_type=SpanType.CHAT_MODEL) as llm:
            llm.set_inputs({"messages": messages, "model": "test-llm"})
            answer = {"role": "assistant", "content": TRACE_ANSWER}
            llm.set_outputs({"choices": [{"index": 0, "message": answer}]})
        root.set_outputs({"choices": [{"index": 0, "message": answer}]})
        trace_id = root.trace_id
    mlflow.flush_trace_async_logging()
    # The spans are written after the trace's info: wait until the server has all three.
    deadline = time.monotonic() + 30
    while True:
        trace = mlflow.get_trace(trace_id)
        if (trace and len(trace.data.spans) == 3) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if trace is None or len(trace.data.spans) != 3:
        raise RuntimeError(f"The server did not return trace {trace_id} with its 3 spans.")
    return trace.to_dict()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "trace":
        sys.exit("usage: python -m tests.support.mlflow_server trace TRACKING_URI EXPERIMENT")
    print(json.dumps(_child_make_trace(sys.argv[2], sys.argv[3])))


def wait_for_trace(tracking_uri: str, trace_id: str, spans: int, timeout_s: float, check_alive):
    """The trace (`mlflow.entities.Trace`) once `tracking_uri` has `spans` of its spans (agent
    servers export traces in batches, after they answer)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    deadline = time.monotonic() + timeout_s
    while True:
        check_alive()
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            trace = client.get_trace(trace_id)
            if len(trace.data.spans) >= spans:
                return trace
        if time.monotonic() > deadline:
            raise AssertionError(f"Trace {trace_id} did not reach {tracking_uri}.")
        time.sleep(0.2)
