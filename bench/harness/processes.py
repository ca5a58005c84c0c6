"""The child processes: the demo agent, the web server (uvicorn, or gunicorn as an experiment)
and the Celery worker, each in its own process group with its log under VAR_DIR."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from . import config
from .config import BIN, REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env() -> dict[str, str]:
    # DEMO_AGENT_* of the caller's shell must not change what the benchmark's agent does.
    return {k: v for k, v in os.environ.items() if not k.startswith("DEMO_AGENT_")}


class Service:
    """A child process in its own process group, its output in a log file under VAR_DIR.
    `env` is added to this process's environment, or with `inherit_env=False` is all of it
    (for a program that must not see the app's DATABASE_URL and the like)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        *,
        inherit_env: bool = True,
        cwd: Path = REPO_ROOT,
    ):
        self.name = name
        self.log_path = config.VAR_DIR / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**(child_env() if inherit_env else {}), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.time()

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")

    def wait_for(self, url: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: {url} did not answer within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 20) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)  # our own group only
                self.process.wait()


class DemoAgent(Service):
    """`python -m demo_agent` on a free port, answering; `flags` add knobs (bench/proxy.py gives
    --latency-ms), `name` tells the processes (and their logs) apart."""

    def __init__(self, flags: tuple[str, ...] = (), name: str = "demo-agent"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.feedback_log = config.VAR_DIR / f"{name}-feedback.jsonl"
        argv = [sys.executable, "-m", "demo_agent", "--port", str(self.port), *flags]
        super().__init__(name, [*argv, "--feedback-log", str(self.feedback_log)])
        self.wait_for(f"{self.url}/health")

    def invocations_url(self, endpoint_name: str) -> str:
        """A deployment's query endpoint; the name picks the agent's schema (any without
        "responses", "chat-agent" or "legacy" in it speaks chat completions)."""
        return f"{self.url}/serving-endpoints/{endpoint_name}/invocations"

    def records(self, endpoint_name: str) -> list[dict]:
        path = f"/serving-endpoints/{endpoint_name}/served-models/feedback/records"
        response = httpx.get(self.url + path, timeout=60)
        response.raise_for_status()
        return response.json()["records"]

    def clear_feedback(self) -> None:
        httpx.post(f"{self.url}/_demo/feedback/clear", timeout=30).raise_for_status()


def experiment_env() -> dict[str, str]:
    """The environment that makes uvicorn and the worker load the experiments' settings
    (--conn-max-age, --db-reuse-max): a module in the temp dir over reviewapp.settings."""
    args = config.ARGS
    lines = []
    if args.conn_max_age is not None:
        lines.append(f"DATABASES['default']['CONN_MAX_AGE'] = {args.conn_max_age}  # noqa: F405")
    if args.db_reuse_max is not None:
        lines.append(f"CELERY_DB_REUSE_MAX = {args.db_reuse_max}")
    if not lines:
        return {}
    module = config.VAR_DIR / "bench_settings.py"
    module.write_text("from reviewapp.settings import *  # noqa: F403\n" + "\n".join(lines) + "\n")
    path = os.pathsep.join([str(config.VAR_DIR), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    return {"DJANGO_SETTINGS_MODULE": "bench_settings", "PYTHONPATH": path}


def experiments() -> str:
    """The experiments given, for the report ("" when the app runs as it is)."""
    args = config.ARGS
    given = ["gunicorn (WSGI, sync workers)"] if args.server == "gunicorn" else []
    if args.conn_max_age is not None:
        given.append(f"CONN_MAX_AGE={args.conn_max_age}")
    if args.db_reuse_max is not None:
        given.append(f"CELERY_DB_REUSE_MAX={args.db_reuse_max}")
    return ", ".join(given)


def start_web(workers: int) -> tuple[Service, str]:
    """The web server with `workers` processes, answering; returns it and its base URL."""
    port = free_port()
    if config.ARGS.server == "gunicorn":
        name = f"web-gunicorn-{workers}"
        argv = [str(BIN / "gunicorn"), "reviewapp.wsgi:application", "--workers", str(workers)]
        argv += ["--bind", f"127.0.0.1:{port}", "--worker-class", "sync", "--backlog", "2048"]
    else:
        name = f"web-{workers}"
        argv = [str(BIN / "uvicorn"), "reviewapp.asgi:application", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--no-access-log", "--lifespan", "off"]
        if workers > 1:
            argv += ["--workers", str(workers)]
    web = Service(name, argv, experiment_env())
    base = f"http://127.0.0.1:{port}"
    web.wait_for(f"{base}/healthz/")
    return web, base


def start_worker(pool: str) -> Service:
    argv = [str(BIN / "celery"), "-A", "reviewapp", "worker", "--loglevel=INFO"]
    argv += ["--hostname=bench-ratings@%h"]
    argv += ["--pool=solo"] if pool == "solo" else ["--concurrency=2"]
    return Service(f"worker-{pool}", argv, experiment_env())
