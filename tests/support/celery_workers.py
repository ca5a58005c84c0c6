"""Real Celery workers as subprocesses (`celery -A reviewapp worker`), on real Redis and the
test database, so a test can kill one the way a machine dies (SIGKILL to its process group)."""

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from django.db import connection

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    def pids(self) -> set[int]:
        """The worker's main process and its pool's children."""
        pids = {self.process.pid}
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        if children.exists():
            pids |= {int(pid) for pid in children.read_text().split()}
        return pids

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def database_url() -> str:
    """The test database, as DATABASE_URL (PostgreSQL only: SQLite's is in this process)."""
    settings = connection.settings_dict
    user, host, port = settings["USER"], settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


def start_worker(name: str, broker_url: str, tmp: Path, *, beat: bool = False, **env) -> Worker:
    log = tmp / f"{name}.log"
    argv = [sys.executable, "-m", "celery", "-A", "reviewapp", "worker", "--pool", "prefork",
            "--concurrency", "1", "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
            "--loglevel", "warning"]  # fmt: skip
    if beat:
        argv += ["--beat", "--schedule", str(tmp / "celerybeat-schedule")]
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker_url,
        "PYTHONUNBUFFERED": "1",
        **{key: str(value) for key, value in env.items()},
    }
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=REPO_ROOT, env=environment, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    return Worker(name, process, log)
