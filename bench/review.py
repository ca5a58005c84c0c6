"""Requests page benchmark (issue 11: ≤ 50 ms server time, p95, at 1,000,000 turns on PostgreSQL).

Run from the repository root:
    .venv/bin/python bench/review.py                    # 1,000,000 turns, 30 runs per case
    .venv/bin/python bench/review.py --rows 200000 --runs 50 --refill

On a scratch PostgreSQL database, BENCH_DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/bench_review, created if missing; it is migrated and its
request log emptied and refilled, so never point it at a database you keep). The fill
(bench/review_fill.py: 5 deployments, ~5 % failed, ~1 % incomplete, texts of 100-500
characters, 90 days, ratings of `answer_correct` on ~5 % of turns by 4 reviewers) is kept for
the next run with the same --seed and --rows; --refill makes it again.

Each case is a GET of the page as a reviewer through Django's test client (the whole
middleware stack, the query and the template; no network), timed in this process: one warm-up,
then --runs runs; p50, p95 and max in ms. Then EXPLAIN (ANALYZE, BUFFERS) of the slowest SQL
query of the slowest case (of every case over the target with --explain-missed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script: make `agents`, `review` importable

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_review"
TARGET_MS = 50.0


def ensure_database(url: str) -> None:
    """Create the scratch database when it does not exist (connecting to `postgres`)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
if not DATABASE_URL.startswith(("postgres://", "postgresql://")):
    sys.exit("BENCH_DATABASE_URL must name a scratch PostgreSQL database.")
VAR_DIR = Path(tempfile.mkdtemp(prefix="bench-review-"))
os.environ.update(
    {
        "VAR_DIR": str(VAR_DIR),
        "DJANGO_SETTINGS_MODULE": "reviewapp.settings",
        "DATABASE_URL": DATABASE_URL,
    }
)
os.environ.setdefault("SECRET_KEY", "bench-" + "k" * 50)
import django  # noqa: E402

django.setup()
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from agents.models import RequestLog  # noqa: E402
from review.filters import Cursor, RequestFilters  # noqa: E402
from review.selectors import request_search  # noqa: E402


def cases(names: dict) -> list[tuple[str, str, dict]]:
    """(name, path, query) of each measured page."""
    support = names["deployments"]["support"]
    billing = names["deployments"]["billing"]
    newest = RequestLog.objects.order_by("-created_at", "-pk").first()
    until = newest.created_at.date()
    week = {"since": (until - timedelta(days=6)).isoformat(), "until": until.isoformat()}
    deep = RequestLog.objects.order_by("-created_at", "-pk").values_list("created_at", "pk")[10_000]
    return [
        ("no filter", "/requests/", {}),
        ("deployment + status failed", "/requests/", {"deployment": billing, "status": "failed"}),
        (
            "deployment + status incomplete",
            "/requests/",
            {"deployment": billing, "status": "incomplete"},
        ),
        ("deployment + last 7 days", "/requests/", {"deployment": billing, **week}),
        (
            "deployment + 1 day, 60 days ago",
            "/requests/",
            {
                "deployment": billing,
                "since": (until - timedelta(days=60)).isoformat(),
                "until": (until - timedelta(days=60)).isoformat(),
            },
        ),
        ("rated=no + deployment", "/requests/", {"rated": "no", "deployment": billing}),
        ("rated=yes + deployment", "/requests/", {"rated": "yes", "deployment": billing}),
        (
            "rating negative + reviewer",
            "/requests/",
            {
                "rating": "answer_correct:negative",
                "reviewer": "rev-ana",
            },
        ),
        ("q (1 % of turns) + deployment", "/requests/", {"q": "kubernetes", "deployment": billing}),
        ("q (10 % of turns) + deployment", "/requests/", {"q": "invoice", "deployment": billing}),
        ("q (no turn) + deployment", "/requests/", {"q": "zeppelin", "deployment": billing}),
        ("second page (after)", "/requests/", {"after": "SECOND"}),
        ("page after 10,000 rows", "/requests/", {"after": Cursor(*deep).encode()}),
        ("agreement: deployment + 7 days", "/requests/agreement/", {"deployment": support, **week}),
    ]


def timed_get(client: Client, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        sys.exit(f"GET {url} answered {response.status_code}")
    return elapsed


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class QueryLog:
    """Each SQL query of a request with its time (connection.execute_wrapper)."""

    def __init__(self):
        self.queries: list[tuple[float, str, object]] = []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append(((time.perf_counter() - started) * 1000, sql, params))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--refill", action="store_true")
    parser.add_argument(
        "--explain-missed",
        action="store_true",
        help="EXPLAIN every case over the target, not only the slowest",
    )
    parser.add_argument("--only", nargs="*", help="case names containing one of these words")
    args = parser.parse_args()

    ensure_database(DATABASE_URL)
    call_command("migrate", verbosity=0)
    import review_fill  # after django.setup(): it imports models

    started = time.perf_counter()
    names = review_fill.ensure_filled(args.rows, args.seed, refill=args.refill)
    turns, ratings = (
        RequestLog.objects.count(),
        review_fill.Rating.objects.filter(is_current=True).count(),
    )
    ready_s = time.perf_counter() - started
    print(f"{turns:,} turns, {ratings:,} current ratings (ready in {ready_s:.0f} s)")

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT
    ).stdout.strip()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (version,) = cursor.fetchone()
    print(
        f"commit {commit}, PostgreSQL {version}, {args.runs} runs per case after one warm-up, "
        f"load average {os.getloadavg()[0]:.1f}"
    )

    client = Client(SERVER_NAME="localhost")
    client.force_login(get_user_model().objects.get(username="rev-ana"))
    results = []
    for name, path, query in cases(names):
        if args.only and not any(word in name for word in args.only):
            continue
        if query.get("after") == "SECOND":
            reviewer = get_user_model().objects.get(username="rev-ana")
            first = request_search(reviewer, RequestFilters())
            query = {"after": first.next_cursor.encode()}
        url = f"{path}?{urlencode(query)}" if query else path
        timed_get(client, url)  # warm-up
        times = [timed_get(client, url) for _ in range(args.runs)]
        log = QueryLog()
        with connection.execute_wrapper(log):
            client.get(url)
        results.append((name, url, times, log.queries))

    # "SQL": the time spent in queries during one more GET, and how many.
    print(f"\n| case | p50 ms | p95 ms | max ms | SQL ms (queries) | ≤ {TARGET_MS:.0f} ms p95 |")
    print("|---|---:|---:|---:|---:|---|")
    for name, _url, times, queries in results:
        p95 = percentile(times, 95)
        print(
            f"| {name} | {statistics.median(times):.1f} | {p95:.1f} | {max(times):.1f} | "
            f"{sum(q[0] for q in queries):.1f} ({len(queries)}) | "
            f"{'yes' if p95 <= TARGET_MS else '**no**'} |"
        )

    if not results:
        return
    slowest = max(results, key=lambda r: percentile(r[2], 95))
    missed = [r for r in results if percentile(r[2], 95) > TARGET_MS]
    for name, url, _, queries in missed if args.explain_missed else [slowest]:
        explain_slowest_query(name, url, queries)


def explain_slowest_query(name: str, url: str, queries: list) -> None:
    ms, sql, params = max(queries, key=lambda q: q[0])
    print(
        f"\n{name} ({url}): its slowest query took {ms:.1f} ms of "
        f"{sum(q[0] for q in queries):.1f} ms in {len(queries)} queries:\n"
    )
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        print("\n".join(line for (line,) in cursor.fetchall()))


if __name__ == "__main__":
    main()
