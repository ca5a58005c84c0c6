"""Start everything `make run` needs and stop it all together.

Processes: the demo agent, the web app under uvicorn (ASGI), a Celery worker and Celery beat.
Ctrl-C (or SIGTERM) stops them all; if one of them dies, the others are stopped too and the exit
code says so. Run it through `make run`, which installs, migrates and bootstraps first.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STOP_GRACE_S = 15


def _commands(env: dict[str, str]) -> dict[str, list[str]]:
    host = env.get("WEB_HOST", "127.0.0.1")
    return {
        "demo-agent": [sys.executable, "-m", "demo_agent", "--port", env["DEMO_AGENT_PORT"]],
        "web": [
            str(BIN / "uvicorn"),
            "reviewapp.asgi:application",
            "--host",
            host,
            "--port",
            env["WEB_PORT"],
            "--no-access-log",
            "--lifespan",
            "off",
            # One process per core by default: a process runs Python on one core at a time.
            "--workers",
            env.get("WEB_WORKERS") or str(os.cpu_count() or 1),
        ],
        "worker": [
            str(BIN / "celery"),
            "-A",
            "reviewapp",
            "worker",
            "--loglevel=INFO",
            "--concurrency=2",
            "--hostname=worker@%h",
        ],
        "beat": [str(BIN / "celery"), "-A", "reviewapp", "beat", "--loglevel=INFO"],
    }


def _wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own URL)
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> int:
    env = dict(os.environ)
    env.setdefault("WEB_PORT", "8000")
    env.setdefault("DEMO_AGENT_PORT", "8001")
    processes: dict[str, subprocess.Popen] = {}
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    for name, argv in _commands(env).items():
        # Own process group: Ctrl-C reaches us once, and we stop the children in order.
        processes[name] = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)

    web_url = f"http://127.0.0.1:{env['WEB_PORT']}"
    up = _wait_until_up(f"{web_url}/healthz/", processes["web"]) and _wait_until_up(
        f"http://127.0.0.1:{env['DEMO_AGENT_PORT']}/health", processes["demo-agent"]
    )
    if up and not stopping:
        password_file = Path(env.get("VAR_DIR", ROOT / "var")) / "admin-password"
        password = password_file.read_text().strip() if password_file.exists() else "(yours)"
        print(f"\n  Review App is running: {web_url}/deployments/", flush=True)
        print(f"  Log in as {env.get('ADMIN_USERNAME', 'admin')} / {password}", flush=True)
        print(
            f"  Demo agent: http://127.0.0.1:{env['DEMO_AGENT_PORT']}   (Ctrl-C stops all)\n",
            flush=True,
        )

    exit_code = 0
    while not stopping:
        for name, process in processes.items():
            if process.poll() is not None:
                print(
                    f"{name} exited with code {process.returncode}; stopping the rest.",
                    file=sys.stderr,
                    flush=True,
                )
                stopping, exit_code = True, 1
                break
        time.sleep(0.5)
    _stop(processes)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
