"""The measurements: alternating rounds of every side (added latency, time to first token), and
a thousand turns in flight (throughput, errors, memory)."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

from harness.machine import CpuUse, CpuWindow, MemorySampler

from .clients import Results, Stop, run_clients

DIRECT = "direct"


def combined(uses: list[CpuUse]) -> CpuUse:
    wall = sum(u.wall_s for u in uses)
    seconds: dict[str, float] = {}
    for use in uses:
        for name, spent in use.seconds.items():
            seconds[name] = seconds.get(name, 0.0) + spent
    busy = sum(u.machine_busy_pct * u.wall_s for u in uses) / max(wall, 1e-9)
    return CpuUse(wall_s=wall, seconds=seconds, machine_busy_pct=busy)


@dataclass
class RoundsResult:
    """Every side of the alternating rounds: every turn's reply, the seconds under load and the
    CPU used while each side ran (by process: a proxy's process is named as its side)."""

    name: str
    clients: int
    sides: list[str]
    results: dict[str, Results] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, CpuUse] = field(default_factory=dict)

    def values(self, side: str, ttft: bool = False) -> list[float]:
        replies = self.results[side].replies
        if ttft:
            return [r.ttft_ms for r in replies if r.ttft_ms is not None]
        return [r.latency_ms for r in replies]

    def rate(self, side: str) -> float:
        return len(self.results[side].replies) / max(self.seconds[side], 1e-9)

    def proxy_cpu_ms(self, side: str) -> float | None:
        """CPU the side's own proxy process used per turn, ms (None for direct)."""
        if side == DIRECT:
            return None
        turns = max(1, len(self.results[side].replies))
        return 1000 * self.cpu[side].seconds.get(side, 0.0) / turns


async def alternating_rounds(
    name: str,
    clients: dict[str, list],
    *,
    rounds: int,
    round_s: float,
    warmup_turns: int,
    cpu_of: dict[str, int],
    pg_pids,
) -> RoundsResult:
    """Warm every side up (`warmup_turns` per client, unrecorded), then `rounds` rounds of
    `round_s` per side, one side at a time, in the order of `clients` in even rounds and the
    reverse in odd ones, so that on average all see the same load on the box. A turn started in
    a round is waited for and recorded."""
    sides = list(clients)
    for side in sides:
        await run_clients(clients[side], Results(), Stop(), turns_each=warmup_turns)
    result = RoundsResult(name, len(clients[sides[0]]), sides)
    uses: dict[str, list[CpuUse]] = {side: [] for side in sides}
    for side in sides:
        result.results[side], result.seconds[side] = Results(), 0.0
    for round_no in range(rounds):
        for side in sides if round_no % 2 == 0 else sides[::-1]:
            with CpuWindow(cpu_of, pg_pids) as cpu:
                started = time.perf_counter()
                stop = Stop(started + round_s)
                await run_clients(clients[side], result.results[side], stop)
                result.seconds[side] += time.perf_counter() - started
            uses[side].append(cpu.use)
    result.cpu = {side: combined(uses[side]) for side in sides}
    return result


@dataclass
class InflightResult:
    side: str
    clients: int
    window_s: float
    warmed_s: float  # until every client had its first answer
    results: Results
    window_start: float
    completed: list  # replies that ended in the window
    in_flight_mean: float = 0.0
    in_flight_min: int = 0
    cpu: CpuUse | None = None
    memory: MemorySampler | None = None
    memory_of: str = ""
    abandoned: int = 0  # turns still unanswered `drain_s` after the window

    @property
    def rate(self) -> float:
        return len(self.completed) / self.window_s

    @property
    def window_errors(self) -> Counter:
        return self.results.error_kinds(self.window_start, self.window_start + self.window_s)

    @property
    def latencies_ms(self) -> list[float]:
        return [r.latency_ms for r in self.completed]

    @property
    def proxy_cpu_ms(self) -> float | None:
        """CPU the side's own proxy process used per turn that ended in the window, ms."""
        if self.side == DIRECT or self.cpu is None:
            return None
        return 1000 * self.cpu.seconds.get(self.side, 0.0) / max(1, len(self.completed))


async def inflight(
    side: str,
    clients: list,
    *,
    window_s: float,
    settle_s: float,
    warmup_cap_s: float,
    stagger_s: float,
    cpu_of: dict[str, int],
    pg_pids,
    memory_pid: int,
    memory_of: str,
    timeout_s: float,
    drain_s: float,
) -> InflightResult:
    """All clients send turns back to back. The window opens `settle_s` after every client has
    had its first answer (or after `warmup_cap_s`) and lasts `window_s`; a turn counts when it
    ends inside it. Clients then stop starting turns; the last ones are waited for, at most
    `drain_s`."""
    results, stop = Results(), Stop()
    with MemorySampler(memory_pid) as memory:
        started = time.perf_counter()
        task = asyncio.create_task(
            run_clients(clients, results, stop, stagger_s=stagger_s, timeout_s=timeout_s)
        )
        while len(results.clients_answered) < len(clients):
            if time.perf_counter() - started > warmup_cap_s or task.done():
                break
            await asyncio.sleep(0.1)
        warmed_s = time.perf_counter() - started
        await asyncio.sleep(settle_s)
        cpu = CpuWindow(cpu_of, pg_pids)
        await asyncio.to_thread(cpu.__enter__)  # /proc scans: not on the clients' event loop
        window_start = time.perf_counter()
        stop.at = window_start + window_s
        counts = []
        while time.perf_counter() < stop.at and not task.done():
            counts.append(results.in_flight)
            await asyncio.sleep(0.1)
        await asyncio.to_thread(cpu.__exit__, None, None, None)
        # The turns still out are not counted; those an overloaded app holds for long are
        # abandoned (their clients hang up) rather than waited for.
        done, _ = await asyncio.wait({task}, timeout=drain_s)
        abandoned = 0 if done else results.in_flight
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if done:
            task.result()  # a client that failed in an unforeseen way fails the run
    return InflightResult(
        side=side,
        clients=len(clients),
        window_s=window_s,
        warmed_s=warmed_s,
        results=results,
        window_start=window_start,
        completed=results.ended_within(window_start, window_start + window_s),
        in_flight_mean=statistics.fmean(counts) if counts else 0.0,
        in_flight_min=min(counts, default=0),
        cpu=cpu.use,
        memory=memory,
        memory_of=memory_of,
        abandoned=abandoned,
    )
