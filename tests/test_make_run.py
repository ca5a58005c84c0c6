"""`make run`'s set-up is idempotent, and its launcher starts and stops everything together.

These run the real commands in subprocesses on an embedded SQLite file and the filesystem broker,
exactly the defaults `make run` uses on a fresh machine.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY_FILE", "ADMIN_PASSWORD")
    }
    env.update({"VAR_DIR": str(var_dir), "SECRET_KEY": "s" * 50, "MLFLOW_MODEL_CATALOG_URI": ""})
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def table_rows(env: dict[str, str], sql: str) -> str:
    output = manage(
        env,
        "shell",
        "--no-imports",
        "-c",
        f"from django.db import connection; c=connection.cursor(); "
        f"c.execute({sql!r}); print(c.fetchall())",
    )
    return output.strip()


def test_set_up_twice_changes_nothing(tmp_path):
    env = embedded_env(tmp_path)
    manage(env, "migrate", "--noinput", "-v", "0")
    first = manage(env, "bootstrap_demo")
    manage(env, "migrate", "--noinput", "-v", "0")
    second = manage(env, "bootstrap_demo")
    assert first == second  # same login, same deployment
    assert "Admin login: admin / " in first
    password = (tmp_path / "admin-password").read_text().strip()
    assert password in first
    assert oct((tmp_path / "admin-password").stat().st_mode & 0o777) == "0o600"
    assert table_rows(env, "select username, is_superuser from auth_user") == "[('admin', True)]"
    deployments = "select model_name, agent_schema, streaming from agents_deployment order by id"
    assert table_rows(env, deployments) == (
        "[('main.demo.rag_agent', 'chat_completions', False), "
        "('main.demo.chat_agent', 'auto', True), "
        "('main.demo.responses_agent', 'auto', True), "
        "('main.demo.legacy_agent', 'legacy_split', False), "
        "('main.demo.openai_compatible', 'chat_completions', True)]"
    )
    groups = table_rows(env, "select name from auth_group order by name")
    assert groups == "[('admin',), ('reviewer',), ('stakeholder',)]"


def test_set_up_keeps_an_admins_edits_and_follows_a_moved_demo_agent(tmp_path):
    env = embedded_env(tmp_path)
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "bootstrap_demo")
    manage(
        env,
        "shell",
        "-c",
        "from agents.models import Deployment as D; "
        "D.objects.update(display_name='Renamed by admin')",
    )
    manage({**env, "DEMO_AGENT_PORT": "9123"}, "bootstrap_demo")
    rows = table_rows(env, "select display_name, query_endpoint from agents_deployment")
    assert "Renamed by admin" in rows
    assert "127.0.0.1:9123/serving-endpoints/agents_main-demo-rag_agent/invocations" in rows


@pytest.mark.integration
def test_the_launcher_serves_the_demo_deployment_and_stops_everything(tmp_path):
    web_port, agent_port = free_port(), free_port()
    env = embedded_env(
        tmp_path,
        WEB_PORT=str(web_port),
        DEMO_AGENT_PORT=str(agent_port),
        REACHABILITY_CHECK_SECONDS="10",
    )
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "collectstatic", "--noinput", "-v", "0")
    manage(env, "bootstrap_demo")
    password = (tmp_path / "admin-password").read_text().strip()
    launcher = subprocess.Popen(
        [sys.executable, "scripts/run_all.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{web_port}"
    try:
        banner = _read_until(launcher, "Log in as", timeout_s=90)
        assert f"{base}/deployments/" in banner and password in banner
        with httpx.Client(base_url=base, timeout=10) as client:
            login_page = client.get("/login/")
            assert client.get("/static/vendor/htmx/htmx.min.js").status_code == 200
            client.post(
                "/login/",
                data={
                    "username": "admin",
                    "password": password,
                    "csrfmiddlewaretoken": login_page.cookies["csrftoken"],
                },
            )
            # Beat schedules the reachability check, the worker runs it over the filesystem
            # broker, and the page shows the result: all four processes at work.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                page = client.get("/deployments/").text
                if "Demo RAG agent" in page and ">Reachable<" in page:
                    break
                time.sleep(1)
            assert "Demo RAG agent" in page
            assert ">Reachable<" in page, "beat + worker never checked the demo agent"
            _assert_a_streamed_turn(client)
    finally:
        launcher.send_signal(signal.SIGINT)
        output, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, output
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz/", timeout=2)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{agent_port}/health", timeout=2)


def _read_until(process: subprocess.Popen, marker: str, timeout_s: float) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError("launcher did not come up:\n" + "".join(seen[-60:]))


def _assert_a_streamed_turn(client: httpx.Client) -> None:
    """The demo ChatAgent streams through the app under uvicorn, as `make run` serves it."""
    listed = client.get("/api/v1/deployments/", params={"model_name": "main.demo.chat_agent"})
    deployment_id = listed.json()["results"][0]["id"]
    form = {
        "message": "What is MLflow tracing?",
        "custom_inputs": "{}",
        "idempotency_key": "make-run-1",
        "csrfmiddlewaretoken": client.cookies["csrftoken"],
    }
    events = []
    with client.stream("POST", f"/chat/{deployment_id}/stream/", data=form) as response:
        assert response.headers["content-type"] == "text/event-stream"
        events = [line for line in response.iter_lines() if line.startswith("event: ")]
    assert events.count("event: delta") > 3 and events[-1] == "event: done"
