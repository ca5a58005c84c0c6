"""The web app under uvicorn as a subprocess, on the test database and real Redis, so a test can
kill it the way a machine dies (SIGKILL) and start it again."""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.celery_workers import REPO_ROOT, Worker, database_url
from tests.support.servers import free_port, wait_for_health

STARTUP_TIMEOUT_S = 60.0


@dataclass
class WebProcess(Worker):
    """Killed and stopped as a worker is (its process group); `url` is where it serves."""

    url: str

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the web process exited:\n{self.log.read_text()[-3000:]}")


def start_web(broker_url: str, tmp: Path, *, port: int | None = None, **env) -> WebProcess:
    port = port or free_port()
    log = tmp / f"web-{port}.log"
    argv = [sys.executable, "-m", "uvicorn", "reviewapp.asgi:application", "--host",
            "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker_url,
        "PYTHONUNBUFFERED": "1",
        **{key: str(value) for key, value in env.items()},
    }
    with log.open("ab") as out:
        process = subprocess.Popen(argv, cwd=REPO_ROOT, env=environment, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    web = WebProcess(f"web-{port}", process, log, f"http://127.0.0.1:{port}")
    if wait_for_health(f"{web.url}/healthz/", web.check_alive, STARTUP_TIMEOUT_S) is None:
        web.stop()
        raise RuntimeError(f"the web process did not start:\n{log.read_text()[-3000:]}")
    return web
