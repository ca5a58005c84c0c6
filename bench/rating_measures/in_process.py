"""What one rating POST and one forwarding batch do, measured in this process: their queries,
and where their time goes (Django's test client for the POST, delivery_run for the batch)."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter

import redis
from django.db import connection
from harness import config
from harness.config import REPO_ROOT
from harness.database import QueryTimer, print_queries
from harness.processes import DemoAgent
from harness.reviewers import Reviewer

from feedback.models import Delivery

from .forwarding import create_ratings
from .setup import Turn, rating_body, reset_ratings, turn_for


def post_breakdown(people: list[Reviewer], turns: list[Turn], runs: int = 200) -> dict:
    """Queries of one POST, and where the time of `runs` POSTs goes: SQL, loading and normalizing
    the trace, publishing the task, the rest (Django, DRF, JSON). WSGI path (Django's test
    client) in this process, on one reused connection: no uvicorn, no new connection."""
    import celery.app.task
    from django.test import Client

    import agents.selectors

    client = Client(HTTP_HOST="127.0.0.1")
    spent = Counter()
    original_trace = agents.selectors.retriever_documents
    original_apply = celery.app.task.Task.apply_async
    timer = QueryTimer()

    def timed_trace(request_id):
        before = len(timer.queries)
        started = time.perf_counter()
        try:
            return original_trace(request_id)
        finally:
            spent["the outline's documents (checks the document)"] += time.perf_counter() - started
            spent["  of which its SQL"] += sum(ms for ms, _ in timer.queries[before:]) / 1000

    def timed_apply(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return original_apply(self, *args, **kwargs)
        finally:
            spent["publish to Redis (apply_async)"] += time.perf_counter() - started

    def one(reviewer: int, k: int) -> None:
        turn = turn_for(reviewer, k, len(people), turns)
        response = client.post(
            turn.assessments_url,
            data=json.dumps(rating_body(turn, k)),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {people[reviewer].token}",
        )
        if response.status_code != 201:
            raise RuntimeError(f"POST answered {response.status_code}: {response.content[:500]}")

    agents.selectors.retriever_documents = timed_trace
    celery.app.task.Task.apply_async = timed_apply
    try:
        reset_ratings()
        for i in range(20):  # warm
            one(i % len(people), 0)
        reset_ratings()
        with connection.execute_wrapper(timer):
            one(0, 0)
        queries = list(timer.queries)
        total, sql = 0.0, 0.0
        spent.clear()
        for i in range(runs):  # each (reviewer, turn) once: no earlier version to replace
            timer.queries.clear()
            with connection.execute_wrapper(timer):
                started = time.perf_counter()
                one(i % len(people), 1 + i // len(people))
                total += time.perf_counter() - started
            sql += timer.total_ms / 1000
        reset_ratings()
        fresh = 0.0
        for i in range(runs):  # as under uvicorn, where each request opens its own connection
            connection.close()
            started = time.perf_counter()
            one(i % len(people), 1 + i // len(people))
            fresh += time.perf_counter() - started
        connects = []
        for _ in range(30):  # what a POST pays when it gets a new connection
            connection.close()
            started = time.perf_counter()
            connection.ensure_connection()
            connects.append((time.perf_counter() - started) * 1000)
        if config.ARGS.profile:
            import cProfile
            import pstats

            reset_ratings()
            profiler = cProfile.Profile()
            profiler.enable()
            for i in range(runs):
                one(i % len(people), 1 + i // len(people))
            profiler.disable()
            stats = pstats.Stats(profiler)
            print(f"\ncProfile of {runs} in-process POSTs, the app's own functions by cumulative:")
            own_code = f"{REPO_ROOT}/(agents|feedback|reviewapp)"
            stats.sort_stats("cumulative").print_stats(own_code, 20)
            print("... and every function by own time:")
            stats.sort_stats("tottime").print_stats(25)
    finally:
        agents.selectors.retriever_documents = original_trace
        celery.app.task.Task.apply_async = original_apply
        reset_ratings()
    per = 1000 / runs
    split = {"total": total * per, "SQL (all queries, client side)": sql * per}
    split.update({name: seconds * per for name, seconds in spent.items()})
    split["rest: Django, DRF, ORM, validation, JSON"] = (
        split["total"]
        - split["SQL (all queries, client side)"]
        - split.get("publish to Redis (apply_async)", 0)
        - (
            split.get("the outline's documents (checks the document)", 0)
            - split.get("  of which its SQL", 0)
        )
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


def batch_breakdown(people: list[Reviewer], turns: list[Turn], agent: DemoAgent) -> dict:
    """One batch of DELIVERY_BATCH_SIZE deliveries sent in this process (feedback.delivery.
    delivery_run, as the task runs it): its queries, and its time by step."""
    from django.conf import settings

    from feedback import delivery, sinks

    size = settings.DELIVERY_BATCH_SIZE
    reset_ratings()
    create_ratings(people, turns, size)
    redis.Redis.from_url(config.ARGS.broker_url).flushdb()  # only this process sends them
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


def print_batch_breakdown(breakdown: dict) -> None:
    queries = breakdown["queries"]
    print(
        f"\nOne batch of {breakdown['size']} sent in process (delivery_run): {len(queries)} "
        f"queries, {sum(ms for ms, _ in queries):.1f} ms of SQL"
    )
    print_queries(queries)
    for name, ms in breakdown["split_ms"].items():
        print(f"  {name:<46} {ms:7.1f} ms")
