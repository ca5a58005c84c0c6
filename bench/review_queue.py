"""Review queue benchmark (issue 11: Next and saving a label ≤ 50 ms server time, p95), on a
session of 100,000 items over the 1,000,000-turn request log of bench/review.py.

Run from the repository root (after bench/review.py has filled its database once):
    .venv/bin/python bench/review_queue.py                 # 1 and 3 reviewers per item
    .venv/bin/python bench/review_queue.py --per-item 1 --runs 300 --explain

On BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/bench_review, a scratch
database): its request log is filled by bench/review_fill.py if it is not yet (same seed and
size as bench/review.py, so an existing fill is kept). A session per variant ("bench queue, N
per item") of the 100,000 oldest successful turns is made once through review.services and
reused; each run first puts its slots back to the same starting point (SQL), so runs compare:
- 1 per item: the first 60,000 items are done, two thirds by queue-vet (40,000) and one third
  by queue-mid (20,000); queue-vet skipped 1 % of queue-mid's.
- 3 per item: queue-vet holds the first slot of the first 40,000 items, queue-mid the second
  of the first 20,000, queue-old the third of the first 5,000, all done: queue-vet's Next passes
  35,000 items that still need a reviewer, but not them.
Those labels have no rating rows; the ratings saved by a run (and their deliveries) are
deleted by the next run, so bench/review.py's ratings stay as they are.

Each case is a reviewer's loop through the API with Django's test client (token auth, the whole
middleware stack; no network), timed in this process: POST .../next/ (claims the next item),
then POST .../items/<id>/labels/ with a thumbs label, --runs times after one warm-up; p50, p95
and max in ms. "SQL" is the time spent in queries during one more loop. --explain prints
EXPLAIN (ANALYZE, BUFFERS) of the slowest SELECT of every case over the target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from urllib.parse import urlsplit

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_review")
DATABASE_URL = os.environ["BENCH_DATABASE_URL"]
if not DATABASE_URL.startswith(("postgres://", "postgresql://")):
    sys.exit("BENCH_DATABASE_URL must name a scratch PostgreSQL database.")

import django_env  # noqa: E402


def ensure_database(url: str) -> None:
    """Create the scratch database when it does not exist (connecting to `postgres`)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


ensure_database(DATABASE_URL)
django_env.configure("bench-review-queue-")

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from agents.models import Deployment, RequestLog  # noqa: E402
from feedback.models import Rating  # noqa: E402
from review import services  # noqa: E402
from review.models import ReviewSession, ReviewSkip, ReviewSlot  # noqa: E402
from reviewapp import roles  # noqa: E402

TARGET_MS = 50.0
ITEMS = 100_000
# The fill bench/review.py makes and keeps (bench/review_fill.py): never another size here.
FILL_ROWS, FILL_SEED = 1_000_000, 11
REVIEWERS = ("queue-vet", "queue-mid", "queue-old", "queue-new")
LABEL = {"text_assessment": {"ratings": {"answer_correct": {"value": "positive"}}}}


def users() -> dict:
    """The bench's admin and reviewers (reviewer role), by name."""
    model = get_user_model()
    out = {}
    for name, role in (("queue-admin", roles.ADMIN), *((r, roles.REVIEWER) for r in REVIEWERS)):
        user, _ = model.objects.get_or_create(username=name, defaults={"email": f"{name}@x.test"})
        user.groups.add(Group.objects.get(name=role))
        out[name] = user
    return out


def ensure_session(per_item: int, people: dict) -> ReviewSession:
    """The variant's session, made once through review.services (100,000 items)."""
    name = f"bench queue, {per_item} per item"
    session = ReviewSession.objects.filter(name=name).first()
    if session is not None and session.items.count() == ITEMS:
        return session
    if session is not None:
        session.delete()  # an interrupted make
    started = time.perf_counter()
    session = services.session_save(
        user=people["queue-admin"],
        data={
            "name": name,
            "label_schemas": ["answer_correct"],
            "deployments": list(Deployment.objects.values_list("pk", flat=True)),
            "assigned_users": list(REVIEWERS),
            "reviewers_per_item": per_item,
        },
    )
    turns = RequestLog.objects.filter(error="").order_by("pk").values_list("pk", flat=True)
    services.items_add(session=session, user=people["queue-admin"], turn_ids=turns[:ITEMS])
    print(
        f"made “{name}”: {ITEMS:,} items, {ITEMS * per_item:,} slots "
        f"({time.perf_counter() - started:.0f} s through review.services.items_add)"
    )
    return session


def reset(session: ReviewSession, people: dict) -> None:
    """Every slot back to the starting point the module docstring describes."""
    Rating.objects.filter(reviewer__username__in=REVIEWERS).delete()
    ReviewSkip.objects.filter(item__session=session).delete()
    ids = {name: people[name].pk for name in REVIEWERS}
    # (item's rank in the session, slot's rank in its item) → who labelled it.
    if session.reviewers_per_item == 1:
        who = (
            f"CASE WHEN k < 60000 AND k %% 3 <> 2 THEN {ids['queue-vet']} "
            f"WHEN k < 60000 THEN {ids['queue-mid']} END"
        )
    else:
        who = (
            f"CASE WHEN j = 0 AND k < 40000 THEN {ids['queue-vet']} "
            f"WHEN j = 1 AND k < 20000 THEN {ids['queue-mid']} "
            f"WHEN j = 2 AND k < 5000 THEN {ids['queue-old']} END"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE review_reviewslot s
            SET reviewer_id = r.who,
                state = CASE WHEN r.who IS NULL THEN 'open' ELSE 'done' END,
                lease_until = NULL, rating_id = NULL, updated_at = now()
            FROM (
                SELECT id, {who} AS who FROM (
                    SELECT s.id,
                           dense_rank() OVER (ORDER BY s.item_id) - 1 AS k,
                           row_number() OVER (PARTITION BY s.item_id ORDER BY s.id) - 1 AS j
                    FROM review_reviewslot s WHERE s.session_id = %s
                ) ranked
            ) r
            WHERE s.id = r.id
            """,  # noqa: S608 (numbers only)
            [session.pk],
        )
        cursor.execute(
            """
            UPDATE review_reviewitem i SET done_count = d.n, consensus_id = NULL
            FROM (
                SELECT item_id, count(*) FILTER (WHERE state = 'done') AS n
                FROM review_reviewslot WHERE session_id = %s GROUP BY item_id
            ) d
            WHERE i.id = d.item_id
            """,
            [session.pk],
        )
        if session.reviewers_per_item == 1:
            # queue-vet skipped 1 % of the items queue-mid then took.
            cursor.execute(
                """
                INSERT INTO review_reviewskip (item_id, reviewer_id, reason, created_at)
                SELECT item_id, %s, 'not my field', now() FROM review_reviewslot
                WHERE session_id = %s AND reviewer_id = %s AND item_id %% 100 = 0
                """,
                [ids["queue-vet"], session.pk, ids["queue-mid"]],
            )
        # As autovacuum leaves tables that stopped changing: statistics and visibility map.
        for table in ("review_reviewslot", "review_reviewitem", "review_reviewskip"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")


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


def loop_once(client: Client, session: ReviewSession) -> tuple[float, float]:
    """Next, then a label of the item it gave: (ms, ms)."""
    base = f"/api/v1/review-sessions/{session.pk}/"
    started = time.perf_counter()
    claimed = client.post(base + "next/")
    next_ms = (time.perf_counter() - started) * 1000
    if claimed.status_code != 200:
        sys.exit(f"Next answered {claimed.status_code}: {claimed.content[:300]!r}")
    started = time.perf_counter()
    saved = client.post(
        f"{base}items/{claimed.json()['id']}/labels/", LABEL, content_type="application/json"
    )
    label_ms = (time.perf_counter() - started) * 1000
    if saved.status_code != 201:
        sys.exit(f"Saving a label answered {saved.status_code}: {saved.content[:300]!r}")
    return next_ms, label_ms


def measure(session: ReviewSession, reviewer, runs: int) -> dict:
    token, _ = Token.objects.get_or_create(user=reviewer)
    client = Client(SERVER_NAME="localhost", HTTP_AUTHORIZATION=f"Token {token.key}")
    loop_once(client, session)  # warm-up
    times = [loop_once(client, session) for _ in range(runs)]
    next_log, label_log = QueryLog(), QueryLog()
    base = f"/api/v1/review-sessions/{session.pk}/"
    with connection.execute_wrapper(next_log):
        item = client.post(base + "next/").json()
    with connection.execute_wrapper(label_log):
        client.post(f"{base}items/{item['id']}/labels/", LABEL, content_type="application/json")
    return {
        "next": ([t[0] for t in times], next_log.queries),
        "label": ([t[1] for t in times], label_log.queries),
    }


def explain_slowest_select(case: str, queries: list) -> None:
    selects = [q for q in queries if q[1].lstrip().upper().startswith("SELECT")]
    if not selects:
        return
    ms, sql, params = max(selects, key=lambda q: q[0])
    print(f"\n{case}: its slowest SELECT took {ms:.1f} ms:\n")
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        print("\n".join(line for (line,) in cursor.fetchall()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--per-item", type=int, nargs="*", default=[1, 3], choices=[1, 3])
    parser.add_argument("--explain", action="store_true", help="EXPLAIN the cases over target")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    import review_fill  # after django.setup(): it imports models

    review_fill.ensure_filled(FILL_ROWS, FILL_SEED, refill=False)
    people = users()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=django_env.REPO_ROOT,
    ).stdout.strip()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (version,) = cursor.fetchone()

    results = []
    for per_item in args.per_item:
        session = ensure_session(per_item, people)
        reset(session, people)
        # Who is measured: the one with most labels, one with some, one with none.
        who = ["queue-vet", "queue-mid", "queue-new"]
        for name in who:
            done = ReviewSlot.objects.filter(session=session, reviewer=people[name]).count()
            found = measure(session, people[name], args.runs)
            for step, what in (("next", "Next"), ("label", "save a label")):
                case = f"{per_item} per item: {what}, {name} ({done:,} done)"
                results.append((case, *found[step]))

    print(
        f"\ncommit {commit}, PostgreSQL {version}, {RequestLog.objects.count():,} turns, "
        f"{ITEMS:,} items per session, {args.runs} runs per case after one warm-up, "
        f"load average {os.getloadavg()[0]:.1f}; Django test client, token auth\n"
    )
    print(f"| case | p50 ms | p95 ms | max ms | SQL ms (queries) | ≤ {TARGET_MS:.0f} ms p95 |")
    print("|---|---:|---:|---:|---:|---|")
    for case, times, queries in results:
        p95 = percentile(times, 95)
        print(
            f"| {case} | {statistics.median(times):.1f} | {p95:.1f} | {max(times):.1f} | "
            f"{sum(q[0] for q in queries):.1f} ({len(queries)}) | "
            f"{'yes' if p95 <= TARGET_MS else '**no**'} |"
        )
    if args.explain:
        for case, times, queries in results:
            if percentile(times, 95) > TARGET_MS:
                explain_slowest_select(case, queries)


if __name__ == "__main__":
    main()
