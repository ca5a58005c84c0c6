"""The benchmark's parts, each against a fresh app process (so its memory figures are its own):
added latency, time to first token, a thousand turns in flight, and --profile."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from urllib.parse import urlsplit

from harness import config
from harness.database import PgBackends
from harness.machine import CpuWindow, proc_status, wait_until_quiet
from harness.processes import DemoAgent, Service, free_port, start_web
from harness.reviewers import Reviewer
from harness.stats import percentile

from . import profiling
from .clients import AppClient, DirectClient, Results, Stop, close_all, run_clients
from .phases import InflightResult, RoundsResult, alternating_rounds, inflight
from .setup import agent_endpoint, request_sent


def _port(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


def _app_clients(port: int, deployment, people: list[Reviewer], n: int, stream=False) -> list:
    return [AppClient(port, deployment.pk, people[i % len(people)].token, stream) for i in range(n)]


def _direct_clients(agent: DemoAgent, body: bytes, n: int, stream=False) -> list:
    path = urlsplit(agent_endpoint(agent)).path
    return [DirectClient(agent.port, path, body, stream) for _ in range(n)]


def copy_request(port: int, deployment, people: list[Reviewer], stream: bool) -> bytes:
    """Two turns through the app (the first opens the conversation, the second is a turn as the
    load sends it); the body the app sent the agent for the second is the direct side's."""

    async def two_turns() -> Results:
        clients = _app_clients(port, deployment, people, 1, stream)
        results = Results()
        try:
            await run_clients(clients, results, Stop(), turns_each=2)
        finally:
            close_all(clients)
        return results

    results = asyncio.run(two_turns())
    if results.errors:
        raise RuntimeError(f"turns through the app failed: {results.error_kinds()}")
    body = request_sent(deployment)
    print(f"  direct body (the app's, {len(body)} bytes): {body.decode()[:160]}", flush=True)
    return body


def measure_rounds(
    deployment, agent: DemoAgent, people: list[Reviewer], pg: PgBackends, *, stream: bool
) -> list[RoundsResult]:
    """Alternating rounds at each client count (--clients; --stream-clients when `stream`)."""
    args = config.ARGS
    web, base = start_web(1)
    results = []
    try:
        port = _port(base)
        body = copy_request(port, deployment, people, stream)
        for n in args.stream_clients if stream else args.clients:
            wait_until_quiet()

            async def run(n: int = n) -> RoundsResult:
                clients = {
                    "app": _app_clients(port, deployment, people, n, stream),
                    "direct": _direct_clients(agent, body, n, stream),
                }
                try:
                    return await alternating_rounds(
                        f"{n} clients",
                        clients,
                        rounds=args.rounds,
                        round_s=args.round_s,
                        warmup_turns=args.warmup_turns,
                        cpu_of={"app": web.pid, "agent": agent.pid},
                        pg_pids=pg,
                    )
                finally:
                    close_all(clients["app"] + clients["direct"])

            results.append(asyncio.run(run()))
            print_rounds_line(results[-1], stream)
    finally:
        web.stop()
    return results


def print_rounds_line(r: RoundsResult, stream: bool) -> None:
    what = "TTFT" if stream else "latency"
    parts = []
    for side in ("direct", "app"):
        values = r.values(side, ttft=stream)
        parts.append(
            f"{side} n={len(values)} p50 {percentile(values, 50):.2f} "
            f"p99 {percentile(values, 99):.2f} ms"
        )
    print(f"  {what}, {r.clients} clients: " + "; ".join(parts), flush=True)


def measure_inflight(
    deployment, agent: DemoAgent, people: list[Reviewer], pg: PgBackends
) -> list[InflightResult]:
    """--inflight-clients clients back to back against the slow agent: straight to it, then
    through the app."""
    args = config.ARGS
    latency_s = args.agent_latency_ms / 1000
    web, base = start_web(1)
    results = []
    try:
        port = _port(base)
        body = copy_request(port, deployment, people, stream=False)
        n = args.inflight_clients
        for side in ("direct", "app"):
            wait_until_quiet()
            idle_rss = proc_status(web.pid)["VmRSS"] / 1024

            async def run(side: str = side) -> InflightResult:
                if side == "app":
                    clients = _app_clients(port, deployment, people, n)
                else:
                    clients = _direct_clients(agent, body, n)
                try:
                    return await inflight(
                        side,
                        clients,
                        window_s=args.inflight_s,
                        settle_s=latency_s,
                        warmup_cap_s=args.warmup_cap_s,
                        stagger_s=latency_s,
                        cpu_of={"app": web.pid, "agent": agent.pid},
                        pg_pids=pg,
                        memory_pid=web.pid if side == "app" else agent.pid,
                        memory_of="app" if side == "app" else "agent",
                        timeout_s=args.timeout_s,
                        drain_s=max(10.0, 3 * latency_s),
                    )
                finally:
                    close_all(clients)

            result = asyncio.run(run())
            results.append(result)
            print(
                f"  {side}: {n} clients, warm after {result.warmed_s:.1f} s, "
                f"{len(result.completed)} turns in {result.window_s:g} s = {result.rate:.1f}/s, "
                f"errors {dict(result.window_errors)}, abandoned at the end {result.abandoned}; "
                f"{result.memory_of} peak RSS {result.memory.peak_rss_kb / 1024:.0f} MB "
                f"(the app idle before: {idle_rss:.0f} MB)",
                flush=True,
            )
    finally:
        web.stop()
    return results


def measure_profile(deployment, people: list[Reviewer], cpu_ms_per_turn: float | None) -> None:
    """The app under cProfile (chat_load/profiling.py) while 50 clients chat with the fast
    agent for --profile seconds, after a warm-up; then where its time went."""
    args = config.ARGS
    port = free_port()
    out = config.VAR_DIR / "app.prof"
    argv = [sys.executable, profiling.__file__, "--out", str(out), "--port", str(port)]
    web = Service("web-profiled", argv)
    try:
        web.wait_for(f"http://127.0.0.1:{port}/healthz/")

        async def run() -> tuple[int, float]:
            clients = _app_clients(port, deployment, people, 50)
            try:
                await run_clients(clients, Results(), Stop(), turns_each=args.warmup_turns)
                os.kill(web.pid, signal.SIGUSR1)
                await asyncio.sleep(0.2)
                results = Results()
                with CpuWindow({"app": web.pid}) as cpu:
                    await run_clients(clients, results, Stop(time.perf_counter() + args.profile))
                turns = len(results.replies)
                return turns, 1000 * cpu.use.seconds["app"] / max(turns, 1)
            finally:
                close_all(clients)

        turns, profiled_ms = asyncio.run(run())
    finally:
        web.stop(timeout_s=120)  # it writes the statistics on the way out
    print(
        f"  profiled: {turns} turns, the app used {profiled_ms:.1f} ms CPU per turn under cProfile"
    )
    profiling.print_profile(str(out), turns, cpu_ms_per_turn)
