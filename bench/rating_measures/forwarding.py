"""Part "forward": N ratings made while no worker runs, then ONE Celery worker started, timed
until every delivery is sent; the demo agent's feedback log must hold exactly the ratings."""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import redis
from harness import config
from harness.machine import machine_busy_ticks, wait_until_quiet
from harness.processes import DemoAgent, start_worker
from harness.reviewers import Reviewer

from feedback import services
from feedback.models import Delivery, DeliveryAttempt, Rating

from .setup import ENDPOINT_NAME, Turn, rating_body, reset_ratings

# A task may carry several ids (feedback/publishing.py): it is filed under its first one's outcome.
TASK_LINE = re.compile(r"delivery_send\[[^\]]+\] succeeded in ([0-9.e-]+)s: '(\w+)[^']*'")


@dataclass
class ForwardResult:
    pool: str
    ratings: int
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
        body = rating_body(turn, i)
        services.rating_create(
            turn=turn.turn,
            reviewer=people[reviewer].user,
            text_assessments=body["text_assessments"],
            retrieval_assessments=body["retrieval_assessments"],
        )
    return time.perf_counter() - started


def measure_forward(
    agent: DemoAgent, people: list[Reviewer], turns: list[Turn], pool: str
) -> ForwardResult:
    n = config.ARGS.ratings
    broker = redis.Redis.from_url(config.ARGS.broker_url)
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
    records = agent.records(ENDPOINT_NAME)
    pairs = {(e["record"]["request_id"], e["record"]["source"]["id"]) for e in records}
    expected = set(Rating.objects.values_list("request__databricks_request_id", "source_id"))
    return ForwardResult(
        pool=pool,
        ratings=n,
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
