"""Measuring: percentiles, CPU use (from /proc: no extra packages), the machine's background
load, PostgreSQL's backends and sessions, and the queries of this process's connection."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field

from . import config
from .config import psycopg_connect

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(-(-p * len(ordered) // 100)))  # ceil(p/100 * n)
    return ordered[min(rank, len(ordered)) - 1]


# --- CPU ---------------------------------------------------------------------------------------


def machine_busy_ticks() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def tree_cpu_s(root_pid: int) -> float:
    """CPU seconds used so far by a process and its live descendants (uvicorn's workers)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                parents[int(entry)] = int(_stat_fields(entry)[1])
    pids, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in pids]
        pids.update(children)
        frontier += children
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat_fields(pid)
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLOCK_TICKS


def background_busy_pct(seconds: float = 2.0) -> float:
    """How busy the machine is with nothing of ours running (other people's tests...)."""
    busy0, total0 = machine_busy_ticks()
    time.sleep(seconds)
    busy, total = machine_busy_ticks()
    return 100 * (busy - busy0) / max(1, total - total0)


def wait_until_quiet() -> float:
    """Wait (up to --quiet-wait s) until the machine is less busy than --quiet-below %;
    returns the background figure last seen."""
    args = config.ARGS
    deadline = time.monotonic() + args.quiet_wait
    while True:
        busy = background_busy_pct()
        if args.quiet_below is None or busy <= args.quiet_below or time.monotonic() > deadline:
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


# --- PostgreSQL ----------------------------------------------------------------------------------


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


def print_queries(queries: list[tuple[float, str]]) -> None:
    """Each distinct statement once, in order of first use, with its count and total time."""
    grouped: dict[str, list[float]] = {}
    for ms, sql in queries:
        grouped.setdefault(sql, []).append(ms)
    for sql, times in grouped.items():
        count = f"{len(times)} x " if len(times) > 1 else ""
        print(f"  {sum(times):6.2f} ms  {count}{sql[:140]}")
