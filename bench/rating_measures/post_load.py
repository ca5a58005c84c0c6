"""Part "post", under load: the rating POST against the web server, in phases (serial, open
loop per --rate, closed loop), each on empty rating tables, with no worker running."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from chat_load.wire import Connection, request_bytes
from harness import config
from harness.database import PgConnections
from harness.machine import CpuUse, CpuWindow, wait_until_quiet
from harness.processes import start_web
from harness.reviewers import Reviewer
from harness.stats import percentile

from feedback.models import Rating

from .setup import Turn, rating_body, reset_ratings, turn_for


@dataclass
class LoadResult:
    name: str
    web_workers: int
    latencies_ms: list[float]
    seconds: float
    errors: Counter
    lag_ms: list[float] = field(default_factory=list)  # open loop: late starts
    cpu: CpuUse | None = None  # "web server" and "load client"
    versions: int = 0  # ratings that replaced the reviewer's earlier one of the same turn
    pg_peak: int = 0  # most backends of the benchmark database at once
    pg_sessions: int = 0  # Postgres sessions opened during the phase
    background_pct: float = 0.0  # machine busy with other work just before the phase

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


class Poster:
    """Posts ratings as the reviewers, counting each reviewer's ratings to pick its next turn.

    On the chat bench's HTTP/1.1 client (chat_load/wire.py), keep-alive connections per
    reviewer: httpx cost the load client ~7 ms of CPU per POST at 100 connections, so the
    closed loop measured the client, not the app (bench/README.md)."""

    def __init__(self, base: str, people: list[Reviewer], turns: list[Turn]):
        address = urlsplit(base)
        self.host, self.port = address.hostname, address.port
        self.people, self.turns = people, turns
        self.counts = [0] * len(people)
        self.free: list[list[Connection]] = [[] for _ in people]
        self.latencies: list[float] = []
        self.errors: Counter = Counter()

    async def post(self, reviewer: int) -> None:
        k = self.counts[reviewer]
        self.counts[reviewer] += 1
        turn = turn_for(reviewer, k, len(self.people), self.turns)
        headers = {
            "Authorization": f"Token {self.people[reviewer].token}",
            "Content-Type": "application/json",
        }
        body = json.dumps(rating_body(turn, k)).encode()
        request = request_bytes("POST", self.host, turn.assessments_url, headers, body)
        free = self.free[reviewer]
        connection = free.pop() if free else Connection(self.host, self.port)
        try:
            reply = await connection.send(request)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.errors[type(exc).__name__] += 1
            return
        finally:
            free.append(connection)
        if reply.status == 201:
            self.latencies.append(reply.latency_ms)
        else:
            self.errors[f"HTTP {reply.status}"] += 1
            if sum(self.errors.values()) <= 3:
                print(f"  unexpected {reply.status}: {reply.body[:300]!r}")

    def close(self) -> None:
        for connections in self.free:
            for connection in connections:
                connection.close()


async def serial_phase(
    base: str, people: list[Reviewer], turns: list[Turn], n: int
) -> tuple[Poster, float, list[float]]:
    """One client posting back-to-back: the POST's latency on an idle server."""
    poster = Poster(base, people, turns)
    started = time.perf_counter()
    for i in range(n):
        await poster.post(i % len(people))
    poster.close()
    return poster, time.perf_counter() - started, []


async def warm_up(base: str, people: list[Reviewer], turns: list[Turn]) -> None:
    """Every reviewer's connection opened, every web worker's code paths and DB connection warm."""
    poster = Poster(base, people, turns)
    for _ in range(3):
        await asyncio.gather(*(poster.post(r) for r in range(len(people))))
    poster.close()


async def open_loop(
    base: str, people: list[Reviewer], turns: list[Turn], seconds: float, rate: float
) -> tuple[Poster, float, list[float]]:
    """Each reviewer's ratings arrive as a Poisson process of `rate` a second; each arrival is
    posted at its time whether or not the reviewer's previous POST has been answered."""
    rng = random.Random(1)
    lags: list[float] = []
    poster = Poster(base, people, turns)
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
    poster.close()
    return poster, loop.time() - start, lags


async def closed_loop(
    base: str, people: list[Reviewer], turns: list[Turn], seconds: float
) -> tuple[Poster, float, list[float]]:
    """Every reviewer posts its next rating as soon as the previous one is answered."""
    poster = Poster(base, people, turns)
    started = time.perf_counter()
    end = started + seconds

    async def reviewer(r: int) -> None:
        while time.perf_counter() < end:
            await poster.post(r)

    await asyncio.gather(*(reviewer(r) for r in range(len(people))))
    poster.close()
    return poster, time.perf_counter() - started, []


def post_phases(base: str, people: list[Reviewer], turns: list[Turn]) -> list:
    """(name, coroutine function) of each phase: serial, open loop per --rate, closed loop."""
    args = config.ARGS
    phases = [("serial, 1 client", lambda: serial_phase(base, people, turns, args.serial_posts))]
    for rate in args.rate:
        name = f"open loop, {len(people)} x {rate:g}/s"
        phases.append((name, lambda rate=rate: open_loop(base, people, turns, args.seconds, rate)))
    name = f"closed loop, {len(people)} tasks"
    phases.append((name, lambda: closed_loop(base, people, turns, args.seconds)))
    return phases


def measure_post(people: list[Reviewer], turns: list[Turn]) -> list[LoadResult]:
    """Every phase against each --web-workers count, each phase printed as it ends."""
    results = []
    for workers in config.ARGS.web_workers:
        web, base = start_web(workers)
        phases = post_phases(base, people, turns)
        try:
            reset_ratings()
            asyncio.run(warm_up(base, people, turns))
            for name, phase in phases:
                reset_ratings()
                background = wait_until_quiet()
                with PgConnections() as pg, CpuWindow({"web server": web.pid}) as cpu:
                    poster, took, lags = asyncio.run(phase())
                result = LoadResult(name, workers, poster.latencies, took, poster.errors, lags)
                result.cpu = cpu.use
                result.versions = Rating.objects.filter(is_current=False).count()
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
        f"      {extra}CPU of 2 cores: machine {cpu.machine_busy_pct:.0f} %, "
        f"web server {cpu.pct('web server'):.0f} %, load client {cpu.pct('load client'):.0f} %; "
        f"new versions (re-ratings): {r.versions}"
    )
    print(
        f"      Postgres: {r.pg_sessions} sessions opened (~{r.pg_sessions / max(1, len(lat)):.2f} "
        f"per POST), at most {r.pg_peak} backends at once"
    )
