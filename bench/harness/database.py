"""PostgreSQL's side of a run: the benchmark database's backends (how many, their pids for their
CPU time, the sessions opened) and the queries of this process's Django connection."""

from __future__ import annotations

import threading
import time

from .config import psycopg_connect


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


class PgBackends:
    """The pids of the benchmark database's backends but ours (for their CPU time)."""

    def __init__(self):
        self.conn = psycopg_connect()

    def __call__(self) -> list[int]:
        sql = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [pid for (pid,) in self.conn.execute(sql).fetchall()]

    def close(self) -> None:
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
