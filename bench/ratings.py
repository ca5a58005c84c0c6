"""Ratings benchmark: the rating POST under 100 concurrent reviewers, and one worker's forwarding.

Run from the repository root:
    .venv/bin/python bench/ratings.py                      # both parts, default sizes
    .venv/bin/python bench/ratings.py --only post --reviewers 100 --seconds 20 --web-workers 1 2
    .venv/bin/python bench/ratings.py --only forward --ratings 5000 --pools prefork solo

Part "post": POST /api/v1/requests/{id}/assessments/ against the app served as in production
(uvicorn reviewapp.asgi:application --lifespan off --no-access-log, as scripts/run_all.py starts
it, with --workers 1 and 2). The deployment's sink is the Databricks feedback endpoint of a
running demo agent, so each POST also writes the pending delivery and enqueues its task on Redis,
the real path; no Celery worker runs then, so the POST is measured alone. Phases, each on empty
rating tables: serial (one client, unloaded), open loop (each reviewer posts at Poisson arrivals,
one a second on average: people who read, then click) and closed loop (every reviewer posts
back-to-back: throughput, and latency under saturation). Before them, POSTs are made in this
process with Django's test client, to list one POST's queries and split 200 POSTs' time
(--profile adds cProfile); Postgres sessions opened per POST are counted in every phase.

Part "forward": N ratings are made with feedback.services.rating_create while no worker runs (each
gets a pending delivery and a message on Redis); then ONE `celery -A reviewapp worker` starts
and the time until every delivery is "sent" is measured; the demo agent's feedback log must then
hold exactly N records, one per rating. Before it, one batch is sent in this process
(delivery_run) to list its queries and time its steps.

Experiments (settings the app does not have, through a settings module written to the temp
dir; the app's code is not touched): --conn-max-age N for the web app, --db-reuse-max N
(CELERY_DB_REUSE_MAX) for the worker. --quiet-below P waits, before each phase, until other
processes (tests running at the same time) keep the machine below P % busy.

Needs PostgreSQL and Redis: by default postgres://postgres@127.0.0.1:5432/reviewapp_bench
(created and migrated if missing) and redis://127.0.0.1:6379/14. Both must be dedicated to the
benchmark: it truncates the rating tables and FLUSHDBs that Redis database between phases. Users,
the deployment and the chat turns (real turns of the demo agent) are kept for the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script: make `agents`, `feedback` importable
BIN = Path(sys.executable).parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/reviewapp_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"
MODEL_NAME, ENDPOINT_NAME = "main.bench.ratings_agent", "bench-ratings-agent"
P99_TARGET_MS = 25.0
FORWARD_TARGET_PER_S = 1000.0
QUESTIONS = (
    "What is MLflow tracing?",
    "How do I deploy an agent on Databricks model serving?",
    "How does agent evaluation judge retrieval?",
    "What does a retriever span record?",
    "How are review app ratings stored?",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["post", "forward"], help="run one part (default both)")
    parser.add_argument("--reviewers", type=int, default=100, help="concurrent reviewers (100)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each load phase")
    parser.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[1.0],
        help="open loop: ratings a second per reviewer (1.0); several give one phase each",
    )
    parser.add_argument("--turns", type=int, default=200, help="real chat turns to rate (200)")
    parser.add_argument(
        "--web-workers", type=int, nargs="+", default=[1, 2], help="web server processes (1 2)"
    )
    parser.add_argument("--ratings", type=int, default=5000, help="ratings to forward (5000)")
    parser.add_argument(
        "--pools",
        nargs="+",
        choices=["prefork", "solo"],
        default=["prefork", "solo"],
        help="worker pools to try: prefork (--concurrency=2, as run_all.py) and/or solo",
    )
    parser.add_argument("--serial-posts", type=int, default=200, help="posts of the serial phase")
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile the 200 in-process POSTs"
    )
    parser.add_argument(
        "--conn-max-age",
        type=int,
        help="experiment: serve the web app with this CONN_MAX_AGE, through a settings module "
        "in the temp dir (made for code before e4a1934; with the ASGI pool only 0 is valid)",
    )
    parser.add_argument(
        "--server",
        choices=["uvicorn", "gunicorn"],
        default="uvicorn",
        help="experiment: gunicorn serves reviewapp.wsgi with sync workers (one request at a "
        "time per process, persistent DB connections) instead of uvicorn (ASGI), as production",
    )
    parser.add_argument(
        "--db-reuse-max",
        type=int,
        help="experiment: run the worker with this CELERY_DB_REUSE_MAX (Celery's Django fixup "
        "then keeps the DB connection between tasks instead of closing it around each one)",
    )
    parser.add_argument(
        "--quiet-below",
        type=float,
        help="before each phase, wait until other processes keep the machine below this %% busy",
    )
    parser.add_argument("--quiet-wait", type=float, default=600, help="... for at most this (s)")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the temp dir of logs (kept on failure)"
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--fresh-db", action="store_true", help="drop and re-create the database first"
    )
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help="a dedicated Redis db")
    return parser.parse_args(argv)


ARGS = parse_args(None if __name__ == "__main__" else [])
if urllib.parse.urlsplit(ARGS.broker_url).path.strip("/") in ("", "0"):
    raise SystemExit("--broker-url must name a dedicated Redis database (it is flushed), not 0")
VAR_DIR = Path(tempfile.mkdtemp(prefix="bench-ratings-"))
os.environ.update(
    {
        "VAR_DIR": str(VAR_DIR),
        "DJANGO_SETTINGS_MODULE": "reviewapp.settings",
        "DATABASE_URL": ARGS.database_url,
        "CELERY_BROKER_URL": ARGS.broker_url,
    }
)
os.environ.setdefault("SECRET_KEY", "bench-ratings-" + "k" * 50)
os.environ.pop("DEBUG", None)  # production settings: DEBUG off


def ensure_database(url: str, *, fresh: bool) -> None:
    """CREATE DATABASE if it is missing (connecting to the server's `postgres` database);
    with `fresh`, DROP it first (migrations edited in place need a new database)."""
    import psycopg

    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


ensure_database(ARGS.database_url, fresh=ARGS.fresh_db)
import django  # noqa: E402

django.setup()
import httpx  # noqa: E402
import redis  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from agents import chat  # noqa: E402
from agents import services as agent_services  # noqa: E402
from agents.models import Deployment, RequestLog  # noqa: E402
from agents.selectors import trace_normalized  # noqa: E402
from feedback import services  # noqa: E402
from feedback.models import Delivery, DeliveryAttempt, Rating  # noqa: E402
from reviewapp import roles  # noqa: E402
from reviewapp.setup import ensure_roles, user_set_role  # noqa: E402

# --- Processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env() -> dict[str, str]:
    # DEMO_AGENT_* of the caller's shell must not change what the benchmark's agent does.
    return {k: v for k, v in os.environ.items() if not k.startswith("DEMO_AGENT_")}


class Service:
    """A child process in its own process group, its output in a log file under VAR_DIR."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None):
        self.name = name
        self.log_path = VAR_DIR / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env={**child_env(), **(env or {})},
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
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.feedback_log = VAR_DIR / "feedback.jsonl"
        argv = [sys.executable, "-m", "demo_agent", "--port", str(self.port)]
        super().__init__("demo-agent", [*argv, "--feedback-log", str(self.feedback_log)])
        self.wait_for(f"{self.url}/health")

    @property
    def query_endpoint(self) -> str:
        return f"{self.url}/serving-endpoints/{ENDPOINT_NAME}/invocations"

    def records(self) -> list[dict]:
        path = f"/serving-endpoints/{ENDPOINT_NAME}/served-models/feedback/records"
        response = httpx.get(self.url + path, timeout=60)
        response.raise_for_status()
        return response.json()["records"]

    def clear_feedback(self) -> None:
        httpx.post(f"{self.url}/_demo/feedback/clear", timeout=30).raise_for_status()


def experiment_env() -> dict[str, str]:
    """The environment that makes uvicorn and the worker load the experiments' settings
    (--conn-max-age, --db-reuse-max): a module in the temp dir over reviewapp.settings."""
    lines = []
    if ARGS.conn_max_age is not None:
        lines.append(f"DATABASES['default']['CONN_MAX_AGE'] = {ARGS.conn_max_age}  # noqa: F405")
    if ARGS.db_reuse_max is not None:
        lines.append(f"CELERY_DB_REUSE_MAX = {ARGS.db_reuse_max}")
    if not lines:
        return {}
    module = VAR_DIR / "bench_ratings_settings.py"
    module.write_text("from reviewapp.settings import *  # noqa: F403\n" + "\n".join(lines) + "\n")
    path = os.pathsep.join([str(VAR_DIR), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    return {"DJANGO_SETTINGS_MODULE": "bench_ratings_settings", "PYTHONPATH": path}


def experiments() -> str:
    given = ["gunicorn (WSGI, sync workers)"] if ARGS.server == "gunicorn" else []
    if ARGS.conn_max_age is not None:
        given.append(f"CONN_MAX_AGE={ARGS.conn_max_age}")
    if ARGS.db_reuse_max is not None:
        given.append(f"CELERY_DB_REUSE_MAX={ARGS.db_reuse_max}")
    return ", ".join(given)


def start_web(workers: int) -> tuple[Service, str]:
    port = free_port()
    if ARGS.server == "gunicorn":
        argv = [str(BIN / "gunicorn"), "reviewapp.wsgi:application", "--workers", str(workers)]
        argv += ["--bind", f"127.0.0.1:{port}", "--worker-class", "sync", "--backlog", "2048"]
        web = Service(f"web-gunicorn-{workers}", argv, experiment_env())
        base = f"http://127.0.0.1:{port}"
        web.wait_for(f"{base}/healthz/")
        return web, base
    argv = [
        str(BIN / "uvicorn"),
        "reviewapp.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--lifespan",
        "off",
    ]
    if workers > 1:
        argv += ["--workers", str(workers)]
    web = Service(f"web-{workers}", argv, experiment_env())
    base = f"http://127.0.0.1:{port}"
    web.wait_for(f"{base}/healthz/")
    return web, base


def start_worker(pool: str) -> Service:
    argv = [str(BIN / "celery"), "-A", "reviewapp", "worker", "--loglevel=INFO"]
    argv += ["--hostname=bench-ratings@%h"]
    argv += ["--pool=solo"] if pool == "solo" else ["--concurrency=2"]
    return Service(f"worker-{pool}", argv, experiment_env())


# --- CPU accounting (from /proc: no extra packages) ---------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_ticks() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def tree_cpu_s(root_pid: int) -> float:
    """CPU seconds used so far by a process and its live descendants (uvicorn's workers)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
    pids, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in pids]
        pids.update(children)
        frontier += children
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLOCK_TICKS


class PgConnections:
    """The benchmark database's backends while a phase runs: the most at once (sampled every
    50 ms) and the sessions opened (pg_stat_database.sessions; the statistics reach it up to a
    second late, hence the pause before the last reading)."""

    def __init__(self):
        self.conn = psycopg_connect()
        self.peak, self.sessions = 0, 0
        self._stop = threading.Event()

    def _sessions(self) -> int:
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        sql = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        return self.conn.execute(sql).fetchone()[0]

    def _sample(self) -> None:
        with psycopg_connect() as conn:
            sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            while not self._stop.wait(0.05):
                self.peak = max(self.peak, conn.execute(sql).fetchone()[0])

    def __enter__(self) -> PgConnections:
        self.sessions0 = self._sessions()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()
        time.sleep(1.5)
        self.sessions = self._sessions() - self.sessions0
        self.conn.close()


def psycopg_connect():
    import psycopg

    return psycopg.connect(ARGS.database_url, autocommit=True)


def background_busy_pct(seconds: float = 2.0) -> float:
    """How busy the machine is with nothing of ours running (other people's tests...)."""
    busy0, total0 = machine_busy_ticks()
    time.sleep(seconds)
    busy, total = machine_busy_ticks()
    return 100 * (busy - busy0) / max(1, total - total0)


def wait_until_quiet() -> float:
    """Wait (up to --quiet-wait s) until the machine is less busy than --quiet-below %;
    returns the background figure last seen."""
    deadline = time.monotonic() + ARGS.quiet_wait
    while True:
        busy = background_busy_pct()
        if ARGS.quiet_below is None or busy <= ARGS.quiet_below or time.monotonic() > deadline:
            return busy
        print(f"  (machine {busy:.0f} % busy with other work; waiting)", flush=True)


@dataclass
class CpuWindow:
    server_pid: int
    busy0: tuple[int, int] = (0, 0)
    server0: float = 0.0
    client0: float = 0.0
    wall0: float = 0.0
    result: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> CpuWindow:
        self.busy0, self.server0 = machine_busy_ticks(), tree_cpu_s(self.server_pid)
        self.client0, self.wall0 = time.process_time(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, total = machine_busy_ticks()
        wall = time.monotonic() - self.wall0
        cores = os.cpu_count() or 1
        self.result = {
            "machine_busy_pct": 100 * (busy - self.busy0[0]) / max(1, total - self.busy0[1]),
            "server_cpu_pct": 100 * (tree_cpu_s(self.server_pid) - self.server0) / wall / cores,
            "client_cpu_pct": 100 * (time.process_time() - self.client0) / wall / cores,
        }


# --- Set-up: reviewers, the deployment, real turns ----------------------------------------------


@dataclass
class Reviewer:
    user: object
    token: str


@dataclass
class Turn:
    turn: RequestLog
    request_id: str
    span_id: str  # the retriever span rated in each POST


def reset_ratings() -> None:
    """Empty the rating tables (and the dedicated Redis db): each phase starts from nothing."""
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE feedback_deliveryattempt, feedback_delivery, feedback_rating "
            "RESTART IDENTITY CASCADE"
        )
    redis.Redis.from_url(ARGS.broker_url).flushdb()


def set_up(agent: DemoAgent, reviewers: int, turns: int) -> tuple[list[Reviewer], list[Turn]]:
    call_command("migrate", verbosity=0)
    ensure_roles()
    fields = {
        "display_name": "Bench ratings agent",
        "endpoint_name": ENDPOINT_NAME,
        "query_endpoint": agent.query_endpoint,
        "agent_schema": "chat_completions",
        "feedback_sink": "databricks_feedback",
        "feedback_endpoint": "",  # derived: the demo agent's feedback endpoint
    }
    deployment = Deployment.objects.filter(model_name=MODEL_NAME, model_version="1").first()
    if deployment is None:
        deployment = agent_services.deployment_create(
            model_name=MODEL_NAME, model_version="1", **fields
        )
    else:  # the demo agent has a new port every run
        deployment = agent_services.deployment_update(deployment=deployment, **fields)
    User = get_user_model()
    people = []
    for i in range(reviewers):
        user, created = User.objects.get_or_create(
            username=f"bench-reviewer-{i:03d}",
            defaults={"email": f"bench-reviewer-{i:03d}@example.com"},
        )
        if created or not roles.can_review(user):
            user_set_role(user=user, role=roles.REVIEWER)
        token, _ = Token.objects.get_or_create(user=user)
        people.append(Reviewer(user, token.key))
    existing = list(
        RequestLog.objects.filter(deployment=deployment, error="").order_by("pk")[:turns]
    )
    started = time.perf_counter()
    for i in range(len(existing), turns):
        asker = people[i % reviewers].user
        conversation = chat.conversation_create(deployment=deployment, user=asker)
        turn = chat.chat_turn(
            deployment=deployment,
            user=asker,
            conversation=conversation,
            message=f"{QUESTIONS[i % len(QUESTIONS)]} ({i})",
            custom_inputs={"top_k": 3},
        )
        if turn.error:
            raise RuntimeError(f"chat turn failed: {turn.error} {turn.error_detail}")
        existing.append(turn)
    if len(existing) and time.perf_counter() - started > 0.5:
        print(f"made chat turns with the demo agent in {time.perf_counter() - started:.1f} s")
    rated = []
    for turn in existing:
        trace = trace_normalized(turn.databricks_request_id)
        span_id = next(s.span_id for s in trace.iter_spans() if s.documents)
        rated.append(Turn(turn, turn.databricks_request_id, span_id))
    return people, rated


def rating_body(turn: Turn, n: int) -> dict:
    return {
        "text_assessments": [
            {
                "ratings": {"answer_correct": {"value": "negative"}},
                "free_text_comment": f"Misses the second half of the question ({n}).",
            }
        ],
        "retrieval_assessments": [
            {
                "position": n % 3,
                "step_id": turn.span_id,
                "ratings": {"chunk_relevance": {"value": "positive"}},
            }
        ],
    }


def turn_for(reviewer: int, k: int, reviewers: int, turns: list[Turn]) -> Turn:
    """A reviewer's k-th rating: each walks forward through the turns from its own offset, so
    it rates a different turn each time (a new rating, not a new version, until it has gone
    round all of them) and reviewers posting at the same moment rate different turns."""
    offset = reviewer * max(1, len(turns) // reviewers)
    return turns[(offset + k) % len(turns)]


# --- Part 1: the rating POST ---------------------------------------------------------------------


@dataclass
class LoadResult:
    name: str
    web_workers: int
    latencies_ms: list[float]
    seconds: float
    errors: Counter
    lag_ms: list[float] = field(default_factory=list)  # open loop: late starts
    cpu: dict[str, float] = field(default_factory=dict)
    versions: int = 0  # ratings that replaced the reviewer's earlier one of the same turn
    pg_peak: int = 0  # most backends of the benchmark database at once
    pg_sessions: int = 0  # Postgres sessions opened during the phase
    background_pct: float = 0.0  # machine busy with other work just before the phase

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(-(-p * len(ordered) // 100)))  # ceil(p/100 * n)
    return ordered[min(rank, len(ordered)) - 1]


class Poster:
    """Posts ratings as the reviewers, counting each reviewer's ratings to pick its next turn."""

    def __init__(self, client: httpx.AsyncClient, people: list[Reviewer], turns: list[Turn]):
        self.client, self.people, self.turns = client, people, turns
        self.counts = [0] * len(people)
        self.latencies: list[float] = []
        self.errors: Counter = Counter()

    async def post(self, reviewer: int) -> None:
        k = self.counts[reviewer]
        self.counts[reviewer] += 1
        turn = turn_for(reviewer, k, len(self.people), self.turns)
        url = f"/api/v1/requests/{turn.request_id}/assessments/"
        headers = {"Authorization": f"Token {self.people[reviewer].token}"}
        started = time.perf_counter()
        try:
            response = await self.client.post(url, json=rating_body(turn, k), headers=headers)
        except httpx.HTTPError as exc:
            self.errors[type(exc).__name__] += 1
            return
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code == 201:
            self.latencies.append(elapsed)
        else:
            self.errors[f"HTTP {response.status_code}"] += 1
            if sum(self.errors.values()) <= 3:
                print(f"  unexpected {response.status_code}: {response.text[:300]}")


def new_client(base: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base, limits=limits, timeout=60)


async def serial_phase(base: str, people: list[Reviewer], turns: list[Turn], n: int):
    """One client posting back-to-back: the POST's latency on an idle server."""
    async with new_client(base, 1) as client:
        poster = Poster(client, people, turns)
        started = time.perf_counter()
        for i in range(n):
            await poster.post(i % len(people))
        return poster, time.perf_counter() - started, []


async def warm_up(base: str, people: list[Reviewer], turns: list[Turn]) -> None:
    """Every reviewer's connection opened, every web worker's code paths and DB connection warm."""
    async with new_client(base, len(people)) as client:
        poster = Poster(client, people, turns)
        for _ in range(3):
            await asyncio.gather(*(poster.post(r) for r in range(len(people))))


async def open_loop(
    base: str, people: list[Reviewer], turns: list[Turn], seconds: float, rate: float
) -> tuple[Poster, float, list[float]]:
    """Each reviewer's ratings arrive as a Poisson process of `rate` a second; each arrival is
    posted at its time whether or not the reviewer's previous POST has been answered."""
    rng = random.Random(1)
    lags: list[float] = []
    async with new_client(base, len(people) * 2) as client:
        poster = Poster(client, people, turns)
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.2
        end = start + seconds
        in_flight: set[asyncio.Task] = set()

        async def reviewer(r: int) -> None:
            due = start + rng.expovariate(rate)
            while due < end:
                await asyncio.sleep(max(0.0, due - loop.time()))
                lags.append((loop.time() - due) * 1000)
                task = asyncio.create_task(poster.post(r))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                due += rng.expovariate(rate)

        await asyncio.gather(*(reviewer(r) for r in range(len(people))))
        await asyncio.gather(*list(in_flight))
        return poster, loop.time() - start, lags


async def closed_loop(
    base: str, people: list[Reviewer], turns: list[Turn], seconds: float
) -> tuple[Poster, float, list[float]]:
    """Every reviewer posts its next rating as soon as the previous one is answered."""
    async with new_client(base, len(people)) as client:
        poster = Poster(client, people, turns)
        started = time.perf_counter()
        end = started + seconds

        async def reviewer(r: int) -> None:
            while time.perf_counter() < end:
                await poster.post(r)

        await asyncio.gather(*(reviewer(r) for r in range(len(people))))
        return poster, time.perf_counter() - started, []


def versions_written() -> int:
    return Rating.objects.filter(is_current=False).count()


def post_phases(base: str, people: list[Reviewer], turns: list[Turn]) -> list:
    """(name, coroutine function) of each phase: serial, open loop per --rate, closed loop."""
    phases = [("serial, 1 client", lambda: serial_phase(base, people, turns, ARGS.serial_posts))]
    for rate in ARGS.rate:
        name = f"open loop, {len(people)} x {rate:g}/s"
        phases.append((name, lambda rate=rate: open_loop(base, people, turns, ARGS.seconds, rate)))
    name = f"closed loop, {len(people)} tasks"
    phases.append((name, lambda: closed_loop(base, people, turns, ARGS.seconds)))
    return phases


def measure_post(people: list[Reviewer], turns: list[Turn]) -> list[LoadResult]:
    results = []
    for workers in ARGS.web_workers:
        web, base = start_web(workers)
        phases = post_phases(base, people, turns)
        try:
            reset_ratings()
            asyncio.run(warm_up(base, people, turns))
            for name, phase in phases:
                reset_ratings()
                background = wait_until_quiet()
                with PgConnections() as pg, CpuWindow(web.pid) as cpu:
                    poster, took, lags = asyncio.run(phase())
                result = LoadResult(name, workers, poster.latencies, took, poster.errors, lags)
                result.cpu, result.versions = cpu.result, versions_written()
                result.pg_peak, result.pg_sessions = pg.peak, pg.sessions
                result.background_pct = background
                results.append(result)
                print_load(result)
            reset_ratings()
        finally:
            web.stop()
    return results


def print_load(r: LoadResult) -> None:
    lat = r.latencies_ms
    errors = ", ".join(f"{k}: {v}" for k, v in r.errors.items()) or "none"
    print(
        f"  web x{r.web_workers} {r.name:<24} n={len(lat):>6} {r.rate:>7.1f}/s  "
        f"p50 {percentile(lat, 50):6.1f}  p90 {percentile(lat, 90):6.1f}  "
        f"p99 {percentile(lat, 99):6.1f}  max {max(lat, default=float('nan')):7.1f} ms  "
        f"errors: {errors}"
    )
    cpu = r.cpu
    extra = f"late starts p99 {percentile(r.lag_ms, 99):.1f} ms, " if r.lag_ms else ""
    extra += f"background before: {r.background_pct:.0f} %; "
    print(
        f"      {extra}CPU of 2 cores: machine {cpu['machine_busy_pct']:.0f} %, "
        f"web server {cpu['server_cpu_pct']:.0f} %, load client {cpu['client_cpu_pct']:.0f} %; "
        f"new versions (re-ratings): {r.versions}"
    )
    print(
        f"      Postgres: {r.pg_sessions} sessions opened (~{r.pg_sessions / max(1, len(lat)):.2f} "
        f"per POST), at most {r.pg_peak} backends at once"
    )


# --- What one POST does (in this process, Django's test client) ----------------------------------


class QueryTimer:
    """Every query of this process's connection with its time (Django's own capture rounds to
    milliseconds): (ms, sql), by connection.execute_wrapper."""

    def __init__(self):
        self.queries: list[tuple[float, str]] = []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append(((time.perf_counter() - started) * 1000, sql))

    @property
    def total_ms(self) -> float:
        return sum(ms for ms, _ in self.queries)


def post_breakdown(people: list[Reviewer], turns: list[Turn], runs: int = 200) -> dict:
    """Queries of one POST, and where the time of `runs` POSTs goes: SQL, loading and normalizing
    the trace, publishing the task, the rest (Django, DRF, JSON). WSGI path (Django's test
    client) in this process, on one reused connection: no uvicorn, no new connection."""
    import celery.app.task
    from django.test import Client

    import agents.selectors

    client = Client(HTTP_HOST="127.0.0.1")
    spent = Counter()
    original_trace = agents.selectors.trace_normalized
    original_apply = celery.app.task.Task.apply_async
    timer = QueryTimer()

    def timed_trace(request_id):
        before = len(timer.queries)
        started = time.perf_counter()
        try:
            return original_trace(request_id)
        finally:
            spent["trace (load + normalize)"] += time.perf_counter() - started
            spent["  of which its SQL"] += sum(ms for ms, _ in timer.queries[before:]) / 1000

    def timed_apply(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return original_apply(self, *args, **kwargs)
        finally:
            spent["publish to Redis (apply_async)"] += time.perf_counter() - started

    def one(reviewer: int, k: int):
        turn = turn_for(reviewer, k, len(people), turns)
        return client.post(
            f"/api/v1/requests/{turn.request_id}/assessments/",
            data=json.dumps(rating_body(turn, k)),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {people[reviewer].token}",
        )

    def check(response) -> None:
        if response.status_code != 201:
            raise RuntimeError(f"POST answered {response.status_code}: {response.content[:500]}")

    agents.selectors.trace_normalized = timed_trace
    celery.app.task.Task.apply_async = timed_apply
    try:
        reset_ratings()
        for i in range(20):  # warm
            check(one(i % len(people), 0))
        reset_ratings()
        with connection.execute_wrapper(timer):
            check(one(0, 0))
        queries = list(timer.queries)
        total, sql = 0.0, 0.0
        spent.clear()
        for i in range(runs):  # each (reviewer, turn) once: no earlier version to replace
            timer.queries.clear()
            with connection.execute_wrapper(timer):
                started = time.perf_counter()
                check(one(i % len(people), 1 + i // len(people)))
                total += time.perf_counter() - started
            sql += timer.total_ms / 1000
        reset_ratings()
        fresh = 0.0
        for i in range(runs):  # as under uvicorn, where each request opens its own connection
            connection.close()
            started = time.perf_counter()
            check(one(i % len(people), 1 + i // len(people)))
            fresh += time.perf_counter() - started
        connects = []
        for _ in range(30):  # what a POST pays when it gets a new connection
            connection.close()
            started = time.perf_counter()
            connection.ensure_connection()
            connects.append((time.perf_counter() - started) * 1000)
        if ARGS.profile:
            import cProfile
            import pstats

            reset_ratings()
            profiler = cProfile.Profile()
            profiler.enable()
            for i in range(runs):
                check(one(i % len(people), 1 + i // len(people)))
            profiler.disable()
            stats = pstats.Stats(profiler)
            print(f"\ncProfile of {runs} in-process POSTs, the app's own functions by cumulative:")
            own_code = f"{REPO_ROOT}/(agents|feedback|reviewapp)"
            stats.sort_stats("cumulative").print_stats(own_code, 20)
            print("... and every function by own time:")
            stats.sort_stats("tottime").print_stats(25)
    finally:
        agents.selectors.trace_normalized = original_trace
        celery.app.task.Task.apply_async = original_apply
        reset_ratings()
    per = 1000 / runs
    split = {"total": total * per, "SQL (all queries, client side)": sql * per}
    split.update({name: seconds * per for name, seconds in spent.items()})
    split["rest: Django, DRF, ORM, validation, JSON"] = (
        split["total"]
        - split["SQL (all queries, client side)"]
        - split.get("publish to Redis (apply_async)", 0)
        - (split.get("trace (load + normalize)", 0) - split.get("  of which its SQL", 0))
    )
    return {
        "queries": queries,
        "split_ms": split,
        "connect_ms": statistics.median(connects),
        "fresh_ms": fresh * per,
    }


def print_breakdown(breakdown: dict) -> None:
    queries = breakdown["queries"]
    print(f"\nOne POST, in process (test client, WSGI path): {len(queries)} queries")
    print_queries(queries)
    print("Mean per POST over 200 POSTs, ms:")
    for name, ms in breakdown["split_ms"].items():
        print(f"  {name:<40} {ms:6.2f}")
    print(
        f"A new database connection (Django's connect, median of 30): "
        f"{breakdown['connect_ms']:.2f} ms (not in the figures above: they reuse one)"
    )
    print(
        f"Mean per POST when each POST opens a new connection (as each request does under "
        f"uvicorn): {breakdown['fresh_ms']:.2f} ms"
    )


# --- Part 2: forwarding with one worker ---------------------------------------------------------


@dataclass
class ForwardResult:
    pool: str
    ratings: int
    create_s: float
    queued: int
    spawn_to_sent_s: float
    first_post_to_sent_s: float
    spawn_to_drained_s: float
    posts: int
    median_batch: float
    median_batch_per_rating: float
    records: int
    distinct_pairs: int
    records_match: bool
    idempotency_keys: int
    attempts: int
    statuses: dict
    background_pct: float
    machine_pct: float
    runtimes: dict[str, list[float]]

    @property
    def rate(self) -> float:
        return self.ratings / self.first_post_to_sent_s if self.first_post_to_sent_s else 0.0


TASK_LINE = re.compile(r"delivery_send\[[^\]]+\] succeeded in ([0-9.e-]+)s: '(\w+)'")


def task_runtimes(log_path: Path) -> dict[str, list[float]]:
    """From the worker's INFO log: each delivery_send's run time (ms), by what it returned."""
    runtimes: dict[str, list[float]] = {}
    for match in TASK_LINE.finditer(log_path.read_text(errors="replace")):
        runtimes.setdefault(match.group(2), []).append(float(match.group(1)) * 1000)
    return runtimes


def queue_depth(r: redis.Redis) -> int:
    # kombu's Redis transport: the "celery" list, plus messages delivered but not acked yet.
    return r.llen("celery") + r.hlen("unacked")


def create_ratings(people: list[Reviewer], turns: list[Turn], n: int) -> float:
    """n ratings through rating_create, each (reviewer, turn) once: rating i is reviewer i % R's
    rating of turn i // R."""
    if n > len(people) * len(turns):
        raise SystemExit(f"--ratings {n} needs more than {len(people)} x {len(turns)} turns")
    started = time.perf_counter()
    for i in range(n):
        reviewer = i % len(people)
        turn = turns[i // len(people)]
        services.rating_create(
            turn=turn.turn,
            reviewer=people[reviewer].user,
            text_assessments=rating_body(turn, i)["text_assessments"],
            retrieval_assessments=rating_body(turn, i)["retrieval_assessments"],
        )
    return time.perf_counter() - started


def batch_breakdown(people: list[Reviewer], turns: list[Turn], agent: DemoAgent) -> dict:
    """One batch of DELIVERY_BATCH_SIZE deliveries sent in this process (feedback.delivery.
    delivery_run, as the task runs it): its queries, and its time by step."""
    from django.conf import settings

    from feedback import delivery, sinks

    size = settings.DELIVERY_BATCH_SIZE
    reset_ratings()
    create_ratings(people, turns, size)
    redis.Redis.from_url(ARGS.broker_url).flushdb()  # only this process sends them
    first = Delivery.objects.order_by("pk").values_list("pk", flat=True).first()
    spent = Counter()
    timer = QueryTimer()
    originals = {
        (delivery, "delivery_claim"): delivery.delivery_claim,
        (delivery, "_finish"): delivery._finish,
        (sinks, "_post"): sinks._post,
    }
    labels = {
        "delivery_claim": "claim (UPDATEs, SELECTs with select_related)",
        "_finish": "finish (attempt rows, UPDATE to sent)",
        "_post": "HTTP POST to the demo agent",
    }

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[labels[name]] += (time.perf_counter() - started) * 1000

        return wrapper

    for (module, name), function in originals.items():
        setattr(module, name, timed(name, function))
    try:
        with connection.execute_wrapper(timer):
            started = time.perf_counter()
            outcome = delivery.delivery_run(first, task_id="bench")
            total = (time.perf_counter() - started) * 1000
    finally:
        for (module, name), function in originals.items():
            setattr(module, name, function)
    sent = Delivery.objects.filter(status="sent").count()
    if outcome != "sent" or sent != size:
        raise RuntimeError(f"in-process batch: {outcome!r}, {sent} of {size} sent")
    reset_ratings()
    agent.clear_feedback()
    split = {"total": total, **spent}
    split["records (databricks_record), rest"] = total - sum(spent.values())
    return {"size": size, "split_ms": split, "queries": list(timer.queries)}


def print_queries(queries: list[tuple[float, str]]) -> None:
    """Each distinct statement once, in order of first use, with its count and total time."""
    grouped: dict[str, list[float]] = {}
    for ms, sql in queries:
        grouped.setdefault(sql, []).append(ms)
    for sql, times in grouped.items():
        count = f"{len(times)} x " if len(times) > 1 else ""
        print(f"  {sum(times):6.2f} ms  {count}{sql[:140]}")


def print_batch_breakdown(breakdown: dict) -> None:
    queries = breakdown["queries"]
    print(
        f"\nOne batch of {breakdown['size']} sent in process (delivery_run): {len(queries)} "
        f"queries, {sum(ms for ms, _ in queries):.1f} ms of SQL"
    )
    print_queries(queries)
    for name, ms in breakdown["split_ms"].items():
        print(f"  {name:<46} {ms:7.1f} ms")


def measure_forward(
    agent: DemoAgent, people: list[Reviewer], turns: list[Turn], pool: str
) -> ForwardResult:
    n = ARGS.ratings
    broker = redis.Redis.from_url(ARGS.broker_url)
    reset_ratings()
    agent.clear_feedback()
    create_s = create_ratings(people, turns, n)
    queued = queue_depth(broker)
    print(f"  {pool}: made {n:,} ratings in {create_s:.1f} s; {queued:,} messages on Redis")
    background = wait_until_quiet()
    busy0 = machine_busy_ticks()
    worker = start_worker(pool)
    sent_at = drained_at = None
    deadline = time.monotonic() + max(600, n / 10)
    try:
        while time.monotonic() < deadline:
            worker.check_alive()
            if sent_at is None:
                done = Delivery.objects.exclude(status__in=["pending", "sending"]).count()
                if done >= n:
                    sent_at = time.time()
            if sent_at is not None and queue_depth(broker) == 0:
                drained_at = time.time()
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"not done in time; see {worker.log_path}")
    finally:
        busy = machine_busy_ticks()
        worker.stop()
    machine_pct = 100 * (busy[0] - busy0[0]) / max(1, busy[1] - busy0[1])
    statuses = dict(Counter(Delivery.objects.values_list("status", flat=True)))
    attempts = list(DeliveryAttempt.objects.values_list("task_id", "started_at", "batch_size"))
    per_post = {(task, start): size for task, start, size in attempts}
    first_post = min(start for _, start, _ in attempts)
    last_sent = max(Delivery.objects.values_list("sent_at", flat=True))
    records = agent.records()
    pairs = {(e["record"]["request_id"], e["record"]["source"]["id"]) for e in records}
    expected = set(Rating.objects.values_list("request__databricks_request_id", "source_id"))
    return ForwardResult(
        pool=pool,
        ratings=n,
        create_s=create_s,
        queued=queued,
        spawn_to_sent_s=sent_at - worker.started_at,
        first_post_to_sent_s=(last_sent - first_post).total_seconds(),
        spawn_to_drained_s=drained_at - worker.started_at,
        posts=len(per_post),
        median_batch=statistics.median(per_post.values()),
        median_batch_per_rating=statistics.median(size for _, _, size in attempts),
        records=len(records),
        distinct_pairs=len(pairs),
        records_match=len(records) == n and pairs == expected,
        idempotency_keys=len({e["idempotency_key"] for e in records}),
        attempts=len(attempts),
        statuses=statuses,
        background_pct=background,
        machine_pct=machine_pct,
        runtimes=task_runtimes(worker.log_path),
    )


def print_forward(r: ForwardResult) -> None:
    ok = "yes" if r.records_match else "NO"
    print(
        f"  {r.pool}: worker start -> all sent {r.spawn_to_sent_s:.2f} s, first post -> last "
        f"sent {r.first_post_to_sent_s:.2f} s ({r.rate:,.0f} ratings/s), queue drained "
        f"{r.spawn_to_drained_s:.2f} s after start; {r.posts} POSTs (demo agent saw "
        f"{r.idempotency_keys} idempotency keys), median batch {r.median_batch:g} per POST / "
        f"{r.median_batch_per_rating:g} per rating; {r.records:,} records, {r.distinct_pairs:,} "
        f"distinct (request_id, source.id), exactly the ratings: {ok}; deliveries {r.statuses}, "
        f"{r.attempts:,} attempt rows; machine {r.machine_pct:.0f} % busy (background before: "
        f"{r.background_pct:.0f} %)"
    )
    for outcome, times in sorted(r.runtimes.items()):
        print(
            f"      {len(times):,} tasks returned {outcome!r}: median "
            f"{statistics.median(times):.1f} ms, total {sum(times) / 1000:.1f} s (the task's run "
            "time, from the worker's log)"
        )


# --- Main ----------------------------------------------------------------------------------------


def print_tables(loads: list[LoadResult], forwards: list[ForwardResult]) -> None:
    if loads:
        print(f"\nRating POST -> 201, ms (target p99 <= {P99_TARGET_MS:g} ms at 100 reviewers)")
        if experiments():
            print(f"EXPERIMENT, not the app's settings: {experiments()}")
        header = (
            f"{ARGS.server:<8} {'phase':<26} {'n':>6} {'req/s':>7} {'p50':>6} {'p90':>6} "
            f"{'p99':>6} {'max':>7} {'errors':>6} {'CPU busy':>8} {'PG conns/POST':>13}"
        )
        print(header + "\n" + "-" * len(header))
        for r in loads:
            lat = r.latencies_ms
            print(
                f"{'x' + str(r.web_workers):<8} {r.name:<26} {len(lat):>6} {r.rate:>7.1f} "
                f"{percentile(lat, 50):>6.1f} {percentile(lat, 90):>6.1f} "
                f"{percentile(lat, 99):>6.1f} {max(lat, default=float('nan')):>7.1f} "
                f"{sum(r.errors.values()):>6} {r.cpu['machine_busy_pct']:>7.0f}% "
                f"{r.pg_sessions / max(1, len(lat)):>13.2f}"
            )
    if forwards:
        print(f"\nForwarding, one worker (target >= {FORWARD_TARGET_PER_S:,.0f} ratings/s)")
        if experiments():
            print(f"EXPERIMENT, not the app's settings: {experiments()}")
        header = (
            f"{'pool':<22} {'ratings':>7} {'start->sent s':>13} {'1st post->sent s':>16} "
            f"{'ratings/s':>9} {'POSTs':>5} {'batch':>5} {'records ok':>10} {'queue empty s':>13}"
        )
        print(header + "\n" + "-" * len(header))
        for r in forwards:
            pool = "prefork, concurrency 2" if r.pool == "prefork" else "solo"
            print(
                f"{pool:<22} {r.ratings:>7} {r.spawn_to_sent_s:>13.2f} "
                f"{r.first_post_to_sent_s:>16.2f} {r.rate:>9,.0f} {r.posts:>5} "
                f"{r.median_batch:>5g} {'yes' if r.records_match else 'NO':>10} "
                f"{r.spawn_to_drained_s:>13.2f}"
            )


def code_version() -> str:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        return result.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench")
    return git("rev-parse", "--short", "HEAD") + (" with uncommitted changes" if dirty else "")


def main() -> int:
    # SIGTERM (and SIGINT, even when started in the background) stops the children first.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    print(f"code: {code_version()}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}; "
        f"database {ARGS.database_url}, broker {ARGS.broker_url}; logs in {VAR_DIR} (removed "
        "at the end unless --keep-logs or on failure)"
    )
    if experiments():
        print(f"EXPERIMENT, not the app's settings: {experiments()}")
    needed = max(ARGS.turns, -(-ARGS.ratings // ARGS.reviewers) if ARGS.only != "post" else 0)
    agent = DemoAgent()
    loads: list[LoadResult] = []
    forwards: list[ForwardResult] = []
    try:
        people, turns = set_up(agent, ARGS.reviewers, needed)
        print(f"{len(people)} reviewers, {len(turns)} turns of the demo agent")
        if ARGS.only in (None, "post"):
            wait_until_quiet()
            print_breakdown(post_breakdown(people, turns))
            print(f"\nRating POST against {ARGS.server} (no worker running):")
            loads = measure_post(people, turns)
        if ARGS.only in (None, "forward"):
            wait_until_quiet()
            print_batch_breakdown(batch_breakdown(people, turns, agent))
            print("\nForwarding with one worker:")
            for pool in ARGS.pools:
                forwards.append(measure_forward(agent, people, turns, pool))
                print_forward(forwards[-1])
    finally:
        agent.stop()
        with contextlib.suppress(Exception):
            reset_ratings()
    print_tables(loads, forwards)
    print(f"\ncode at the end: {code_version()}")
    if not ARGS.keep_logs:
        shutil.rmtree(VAR_DIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
