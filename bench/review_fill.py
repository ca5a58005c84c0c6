"""The request log that bench/review.py measures the requests page over: N turns of several
deployments over 90 days and current ratings on about 5 % of them, written with PostgreSQL's
COPY in batches. Django must be set up (on PostgreSQL) before this module is imported.

The fill is deterministic for a seed (each batch has its own random generator) and resumable:
each batch is one transaction, recorded in the table `bench_review_fill`, so an interrupted fill
goes on from the first batch not recorded. A fill for another seed or size, or --refill, empties
the request log (and, by cascade, the ratings) first.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction

from agents.models import Deployment, RequestLog
from feedback.models import Rating
from reviewapp import roles

BATCH = 50_000
DAYS = 90
# The newest turn's time: fixed, so a seed always makes the same rows.
LAST_TURN_AT = datetime(2026, 12, 1, tzinfo=UTC)
# (name, share of the traffic)
DEPLOYMENTS = (
    ("support", 0.40),
    ("billing", 0.25),
    ("search", 0.15),
    ("hr", 0.12),
    ("legal", 0.08),
)
REVIEWERS = ("rev-ana", "rev-ben", "rev-chen", "rev-dora")
RATED_SHARE = 0.05
# Words the benchmark searches for, and the share of turns whose question holds each.
SEARCH_WORDS = {"kubernetes": 0.01, "invoice": 0.10}
FILLER = " ".join(
    (
        "the agent should explain how our service handles this case for a customer who asked",
        "yesterday about the account settings and the monthly report that was sent by email",
        "with a summary of recent activity and a link to the dashboard where every team member",
        "can see what changed since last week and why the numbers differ from the",
        "previous quarter",
    )
).split()


def ensure_filled(rows: int, seed: int, *, refill: bool) -> dict:
    """Fill (or finish filling) the request log; returns the names the benchmark needs."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_review_fill "
            "(seed integer, rows integer, batch integer, PRIMARY KEY (seed, rows, batch))"
        )
        cursor.execute(
            "SELECT batch FROM bench_review_fill WHERE seed = %s AND rows = %s", [seed, rows]
        )
        done = {batch for (batch,) in cursor.fetchall()}
        cursor.execute(
            "SELECT count(*) FROM bench_review_fill WHERE NOT (seed = %s AND rows = %s)",
            [seed, rows],
        )
        (other_fills,) = cursor.fetchone()
        if refill or other_fills or (not done and RequestLog.objects.exists()):
            cursor.execute("TRUNCATE agents_requestlog, bench_review_fill CASCADE")
            done = set()
    names = _users_and_deployments()
    batches = range((rows + BATCH - 1) // BATCH)
    todo = [b for b in batches if b not in done]
    started = time.perf_counter()
    for number, batch in enumerate(todo, 1):
        with transaction.atomic():
            _fill_batch(batch, rows, seed, names)
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO bench_review_fill VALUES (%s, %s, %s)", [seed, rows, batch]
                )
        print(
            f"  filled batch {number}/{len(todo)} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    if todo:
        # As autovacuum leaves a table that has stopped growing: statistics gathered and pages
        # marked all-visible (which index-only scans need).
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE) agents_requestlog")
            cursor.execute("VACUUM (ANALYZE) feedback_rating")
    return names


def _users_and_deployments() -> dict:
    users = get_user_model()
    group, _ = Group.objects.get_or_create(name=roles.REVIEWER)
    reviewers = {}
    for name in REVIEWERS:
        user, _ = users.objects.get_or_create(username=name)
        user.groups.add(group)
        reviewers[name] = user.pk
    chatter, _ = users.objects.get_or_create(username="bench-chatter")
    deployments = {}
    for name, _share in DEPLOYMENTS:
        deployment, _ = Deployment.objects.get_or_create(
            model_name=f"main.agents.bench_{name}",
            model_version="1",
            defaults={"query_endpoint": f"http://127.0.0.1:9/serving-endpoints/{name}/invocations"},
        )
        deployments[name] = deployment.pk
    return {"reviewers": reviewers, "chatter": chatter.pk, "deployments": deployments}


def _text(rng: random.Random, words: int, extra: list[str]) -> str:
    chosen = [rng.choice(FILLER) for _ in range(words)] + extra
    rng.shuffle(chosen)
    return " ".join(chosen).capitalize() + "."


def _fill_batch(batch: int, rows: int, seed: int, names: dict) -> None:
    rng = random.Random(f"{seed}-{batch}")
    deployment_ids = [names["deployments"][name] for name, _ in DEPLOYMENTS]
    shares = [share for _, share in DEPLOYMENTS]
    reviewers = list(names["reviewers"].items())
    span = timedelta(days=DAYS) / rows
    first_turn_at = LAST_TURN_AT - timedelta(days=DAYS)
    turns, ratings = [], []
    for i in range(batch * BATCH, min(rows, (batch + 1) * BATCH)):
        created_at = first_turn_at + span * i
        deployment_id = rng.choices(deployment_ids, shares)[0]
        words = [w for w, share in SEARCH_WORDS.items() if rng.random() < share]
        failed, incomplete = rng.random() < 0.05, rng.random() < 0.01
        error = "The agent did not answer within 120 s." if failed or incomplete else ""
        question = _text(rng, rng.randint(20, 60), words)
        answer = "" if failed else _text(rng, rng.randint(30, 90), [])
        turns.append(
            (
                i + 1,  # ids follow time, as in production
                deployment_id,
                names["chatter"],
                f"bench-{seed}-{i}",
                created_at.date(),
                int(created_at.timestamp() * 1000),
                504 if failed else 200,
                int(rng.lognormvariate(7.0, 0.8)),  # median ~1.1 s, a long tail
                question,
                answer,
                incomplete and not failed,
                error,
                created_at,
            )
        )
        if rng.random() < RATED_SHARE:
            for name, reviewer_id in rng.sample(reviewers, rng.choice((1, 1, 2, 3))):
                value = "positive" if rng.random() < 0.7 else "negative"
                assessment = {"ratings": {"answer_correct": {"value": value}}}
                rated_at = created_at + timedelta(minutes=rng.randint(5, 600))
                if rng.random() < 0.1:  # changed their mind once: an older version stays
                    older = {"ratings": {"answer_correct": {"value": "positive"}}}
                    ratings.append(
                        (i + 1, deployment_id, reviewer_id, name, older, False, rated_at)
                    )
                    rated_at += timedelta(minutes=1)
                ratings.append(
                    (i + 1, deployment_id, reviewer_id, name, assessment, True, rated_at)
                )
    _copy_turns(turns)
    _copy_ratings(ratings)


def _copy_turns(turns: list[tuple]) -> None:
    columns = (
        "id, deployment_id, user_id, databricks_request_id, date, timestamp_ms, status_code, "
        "execution_time_ms, request, response, incomplete, error, created_at, client_request_id, "
        "request_raw, response_raw, request_raw_truncated, response_raw_truncated, "
        "mlflow_trace_id, output_items, request_metadata, schema_version, custom_inputs, "
        "error_detail"
    )
    constant = ("", "", "", False, False, "", "[]", "{}", "1", "{}", "")
    with connection.cursor() as cursor:
        with cursor.connection.cursor().copy(
            f"COPY {RequestLog._meta.db_table} ({columns}) FROM STDIN"
        ) as copy:
            for turn in turns:
                copy.write_row(turn + constant)
        # COPY with explicit ids leaves the sequence behind.
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
            "(SELECT max(id) FROM agents_requestlog))",
            [RequestLog._meta.db_table],
        )


def _copy_ratings(ratings: list[tuple]) -> None:
    columns = (
        "request_id, deployment_id, reviewer_id, source_id, text_assessment, is_current, "
        "created_at, source_type, retrieval_assessments"
    )
    with (
        connection.cursor() as cursor,
        cursor.connection.cursor().copy(
            f"COPY {Rating._meta.db_table} ({columns}) FROM STDIN"
        ) as copy,
    ):
        for request_id, deployment_id, reviewer_id, name, text, current, at in ratings:
            copy.write_row(
                (
                    request_id,
                    deployment_id,
                    reviewer_id,
                    name,
                    json.dumps(text),
                    current,
                    at,
                    "human",
                    "[]",
                )
            )
