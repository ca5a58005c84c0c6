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
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a script: make `agents`, `feedback` importable; bench/ itself is on sys.path already
# (the script's directory), which makes `harness` and `rating_measures` importable.
sys.path.insert(0, str(REPO_ROOT))

from harness import config  # noqa: E402  (after the path is set)
from harness.config import DEFAULT_BROKER_URL, DEFAULT_DATABASE_URL  # noqa: E402
from harness.machine import wait_until_quiet  # noqa: E402
from harness.processes import DemoAgent, experiments  # noqa: E402
from harness.stats import percentile  # noqa: E402

if TYPE_CHECKING:
    from rating_measures.forwarding import ForwardResult
    from rating_measures.post_load import LoadResult

P99_TARGET_MS = 25.0
FORWARD_TARGET_PER_S = 1000.0


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


def print_experiments() -> None:
    if experiments():
        print(f"EXPERIMENT, not the app's settings: {experiments()}")


def print_table_head(title: str, header: str) -> None:
    print(title)
    print_experiments()
    print(header + "\n" + "-" * len(header))


def print_tables(loads: list[LoadResult], forwards: list[ForwardResult]) -> None:
    if loads:
        print_table_head(
            f"\nRating POST -> 201, ms (target p99 <= {P99_TARGET_MS:g} ms at 100 reviewers)",
            f"{config.ARGS.server:<8} {'phase':<26} {'n':>6} {'req/s':>7} {'p50':>6} {'p90':>6} "
            f"{'p99':>6} {'max':>7} {'errors':>6} {'CPU busy':>8} {'PG conns/POST':>13}",
        )
        for r in loads:
            lat = r.latencies_ms
            print(
                f"{'x' + str(r.web_workers):<8} {r.name:<26} {len(lat):>6} {r.rate:>7.1f} "
                f"{percentile(lat, 50):>6.1f} {percentile(lat, 90):>6.1f} "
                f"{percentile(lat, 99):>6.1f} {max(lat, default=float('nan')):>7.1f} "
                f"{sum(r.errors.values()):>6} {r.cpu.machine_busy_pct:>7.0f}% "
                f"{r.pg_sessions / max(1, len(lat)):>13.2f}"
            )
    if forwards:
        print_table_head(
            f"\nForwarding, one worker (target >= {FORWARD_TARGET_PER_S:,.0f} ratings/s)",
            f"{'pool':<22} {'ratings':>7} {'start->sent s':>13} {'1st post->sent s':>16} "
            f"{'ratings/s':>9} {'POSTs':>5} {'batch':>5} {'records ok':>10} {'queue empty s':>13}",
        )
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)  # --help exits here, before any database or process is touched
    config.configure(args, prefix="bench-ratings-")
    # These import Django models: only after django.setup() in configure().
    from rating_measures.forwarding import measure_forward, print_forward
    from rating_measures.in_process import (
        batch_breakdown,
        post_breakdown,
        print_batch_breakdown,
        print_breakdown,
    )
    from rating_measures.post_load import measure_post
    from rating_measures.setup import reset_ratings, set_up

    # SIGTERM (and SIGINT, even when started in the background) stops the children first.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    print(f"code: {code_version()}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}; "
        f"database {args.database_url}, broker {args.broker_url}; logs in {config.VAR_DIR} "
        "(removed at the end unless --keep-logs or on failure)"
    )
    print_experiments()
    needed = max(args.turns, -(-args.ratings // args.reviewers) if args.only != "post" else 0)
    agent = DemoAgent()
    loads: list[LoadResult] = []
    forwards: list[ForwardResult] = []
    try:
        people, turns = set_up(agent, args.reviewers, needed)
        print(f"{len(people)} reviewers, {len(turns)} turns of the demo agent")
        if args.only in (None, "post"):
            wait_until_quiet()
            print_breakdown(post_breakdown(people, turns))
            print(f"\nRating POST against {args.server} (no worker running):")
            loads = measure_post(people, turns)
        if args.only in (None, "forward"):
            wait_until_quiet()
            print_batch_breakdown(batch_breakdown(people, turns, agent))
            print("\nForwarding with one worker:")
            for pool in args.pools:
                forwards.append(measure_forward(agent, people, turns, pool))
                print_forward(forwards[-1])
    finally:
        agent.stop()
        with contextlib.suppress(Exception):
            reset_ratings()
    print_tables(loads, forwards)
    print(f"\ncode at the end: {code_version()}")
    if not args.keep_logs:
        shutil.rmtree(config.VAR_DIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
