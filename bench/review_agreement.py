"""Agreement benchmark: the figures over 10,000 items × 3 reviewers (issue 11: ≤ 1 s).

Run from the repository root:
    .venv/bin/python bench/review_agreement.py                   # 10,000 items, 5 runs
    .venv/bin/python bench/review_agreement.py --items 100000 --runs 3

Two measurements, each the median of --runs after one warm-up run:
- `agreement()`: review.agreement over {item: {reviewer: value}} already in memory, for a thumbs
  question (nominal: percent agreement, Fleiss' κ, Krippendorff's α) and a 1-5 numeric question
  (interval: percent agreement, Krippendorff's α). The first call's statsmodels import is timed
  apart (it happens once per process).
- `agreement_by_question()`: what the Agreement panel and GET /api/v1/agreement/ do: select the
  newest 10,000 matching turns, read their current ratings (3 per turn, both questions in each),
  and compute both questions' figures. On a throw-away SQLite database in a temp dir; with
  BENCH_DATABASE_URL=postgres://…/<scratch database>, on PostgreSQL (the script adds its rows
  and leaves them; each run adds a new deployment, and measures only its own turns).

Labels are random with a bias towards one answer per item (reviewers agree about 70 % of the
time), seeded, so each run measures the same data.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta

import django_env

VAR_DIR = django_env.configure("bench-agreement-")  # SQLite, or BENCH_DATABASE_URL
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from agents.models import Deployment, RequestLog  # noqa: E402
from feedback.label_schema_services import deployment_label_schemas_set  # noqa: E402
from feedback.models import LabelSchema, Rating  # noqa: E402
from review.agreement import agreement  # noqa: E402
from review.agreement_selectors import agreement_by_question  # noqa: E402
from review.filters import RequestFilters  # noqa: E402

REVIEWERS = ("rev-a", "rev-b", "rev-c")


def labels(items: int, seed: int) -> tuple[dict, dict]:
    """{item: {reviewer: thumbs}} and {item: {reviewer: 1-5}}."""
    rng = random.Random(seed)
    thumbs, scores = {}, {}
    for item in range(items):
        truth, score = rng.choice(("positive", "negative")), rng.randint(1, 5)
        thumbs[item], scores[item] = {}, {}
        for reviewer in REVIEWERS:
            agrees = rng.random() < 0.7
            thumbs[item][reviewer] = truth if agrees else rng.choice(("positive", "negative"))
            scores[item][reviewer] = score if agrees else rng.randint(1, 5)
    return thumbs, scores


def timed(run, runs: int) -> tuple[float, object]:
    run()  # warm-up
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def seed_database(thumbs: dict, scores: dict):
    call_command("migrate", verbosity=0)
    users = get_user_model()
    admin = users.objects.create_superuser(f"bench-admin-{uuid.uuid4().hex[:6]}", "", "pw")
    reviewers = [users.objects.create_user(f"{r}-{uuid.uuid4().hex[:6]}") for r in REVIEWERS]
    deployment = Deployment.objects.create(
        model_name=f"main.agents.bench_{uuid.uuid4().hex[:8]}",
        model_version="1",
        query_endpoint="http://127.0.0.1:9/serving-endpoints/bench/invocations",
    )
    # Label schemas are shared: a database used before (BENCH_DATABASE_URL) may have them.
    LabelSchema.objects.get_or_create(
        name="answer_correct", defaults={"title": "?", "input_type": "thumbs"}
    )
    LabelSchema.objects.get_or_create(
        name="score",
        defaults={"title": "?", "input_type": "numeric", "min_value": 1, "max_value": 5},
    )
    deployment_label_schemas_set(deployment=deployment, names=["answer_correct", "score"])
    now = datetime.now(UTC)
    turns = RequestLog.objects.bulk_create(
        [
            RequestLog(
                deployment=deployment,
                user=admin,
                client_request_id=str(uuid.uuid4()),
                databricks_request_id=str(uuid.uuid4()),
                date=now.date(),
                timestamp_ms=int(now.timestamp() * 1000) - item,
                created_at=now - timedelta(seconds=item),
                status_code=200,
                execution_time_ms=40,
                request="What is MLflow tracing?",
                response="It records each step of an agent as a span.",
            )
            for item in thumbs
        ],
        batch_size=2000,
    )
    Rating.objects.bulk_create(
        [
            Rating(
                request=turn,
                deployment=deployment,
                reviewer=user,
                source_id=user.username,
                text_assessment={
                    "ratings": {
                        "answer_correct": {"value": thumbs[item][name]},
                        "score": {"value": str(scores[item][name])},
                    }
                },
            )
            for item, turn in zip(thumbs, turns, strict=True)
            for name, user in zip(REVIEWERS, reviewers, strict=True)
        ],
        batch_size=2000,
    )
    return admin, deployment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=django_env.REPO_ROOT,
    ).stdout.strip()
    print(
        f"commit {commit}, {args.items:,} items × {len(REVIEWERS)} reviewers, "
        f"median of {args.runs}, database {connection.vendor}"
    )

    thumbs, scores = labels(args.items, seed=11)
    start = time.perf_counter()
    agreement(
        {
            0: {"a": "x", "b": "y"},
            1: {"a": "x", "b": "x"},
            2: {"a": "y", "b": "y"},
            3: {"a": "x", "b": "x", "c": "y"},
        },
        "nominal",
    )
    print(f"first call (imports statsmodels): {(time.perf_counter() - start) * 1000:8.1f} ms")
    for name, data, level in (("thumbs", thumbs, "nominal"), ("score", scores, "interval")):
        ms, result = timed(lambda d=data, lv=level: agreement(d, lv), args.runs)
        shown = ", ".join(f"{f.key} {f.value:.3f}" for f in result.figures)
        print(f"agreement() {name:7} ({level:8}) {ms:8.1f} ms   {shown}")

    seed_start = time.perf_counter()
    admin, deployment = seed_database(thumbs, scores)
    print(
        f"seeded {args.items:,} turns and {args.items * len(REVIEWERS):,} ratings in "
        f"{time.perf_counter() - seed_start:.1f} s"
    )
    filters = RequestFilters(deployment_id=deployment.pk)
    ms, report = timed(lambda: agreement_by_question(admin, filters), args.runs)
    print(
        f"agreement_by_question() both questions {ms:8.1f} ms   "
        f"({report.turns:,} turns, capped: {report.capped})"
    )


if __name__ == "__main__":
    main()
