"""The benchmark's parts, each against a fresh app process and fresh peers (so their memory
figures are their own): added latency, time to first token, a thousand turns in flight, and
--profile."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from harness import config
from harness.database import PgBackends
from harness.machine import CpuWindow, proc_status, wait_until_quiet
from harness.processes import DemoAgent, Service, free_port
from harness.reviewers import Reviewer
from harness.stats import percentile

from . import profiling
from .clients import AppClient, Results, Stop, close_all, run_clients
from .peers import Peers
from .phases import InflightResult, RoundsResult, alternating_rounds, inflight
from .servers import serving
from .setup import ENDPOINT_NAME, request_sent


def _app_clients(port: int, deployment, people: list[Reviewer], n: int, stream=False) -> list:
    return [AppClient(port, deployment.pk, people[i % len(people)].token, stream) for i in range(n)]


def copy_request(port: int, deployment, people: list[Reviewer], stream: bool) -> bytes:
    """Two turns through the app (the first opens the conversation, the second is a turn as the
    load sends it); the body the app sent the agent for the second is what the other sides
    send."""

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
    print(f"  the others' body (the app's, {len(body)} bytes): {body.decode()[:160]}", flush=True)
    return body


def measure_rounds(
    part: str,
    deployment,
    agent: DemoAgent,
    people: list[Reviewer],
    pg: PgBackends,
    peers: Peers,
    *,
    stream: bool,
) -> list[RoundsResult]:
    """Alternating rounds of every side (--sides) at each client count (--clients;
    --stream-clients when `stream`)."""
    args = config.ARGS
    results = []
    with serving(agent, agent.invocations_url(ENDPOINT_NAME), peers, part) as servers:
        sides = servers.sides(args.sides)
        body = copy_request(servers.web_port, deployment, people, stream)
        for n in args.stream_clients if stream else args.clients:
            wait_until_quiet()

            async def run(n: int = n) -> RoundsResult:
                clients = {
                    side: servers.clients(
                        side, n, deployment=deployment, people=people, body=body, stream=stream
                    )
                    for side in sides
                }
                try:
                    return await alternating_rounds(
                        f"{n} clients",
                        clients,
                        rounds=args.rounds,
                        round_s=args.round_s,
                        warmup_turns=args.warmup_turns,
                        cpu_of=servers.pids,
                        pg_pids=pg,
                    )
                finally:
                    close_all([c for side_clients in clients.values() for c in side_clients])

            results.append(asyncio.run(run()))
            print_rounds_line(results[-1], stream)
    return results


def print_rounds_line(r: RoundsResult, stream: bool) -> None:
    what = "TTFT" if stream else "latency"
    parts = []
    for side in r.sides:
        values = r.values(side, ttft=stream)
        errors = sum(r.results[side].error_kinds().values())
        parts.append(
            f"{side} n={len(values)} p50 {percentile(values, 50):.1f} "
            f"p99 {percentile(values, 99):.1f} ms" + (f" ({errors} errors)" if errors else "")
        )
    print(f"  {what}, {r.clients} clients: " + "; ".join(parts), flush=True)


def measure_inflight(
    deployment, agent: DemoAgent, people: list[Reviewer], pg: PgBackends, peers: Peers
) -> list[InflightResult]:
    """--inflight-clients clients back to back against the slow agent, one side after the
    other (--sides)."""
    args = config.ARGS
    latency_s = args.inflight_agent_ms / 1000
    results = []
    with serving(agent, agent.invocations_url(ENDPOINT_NAME), peers, "inflight") as servers:
        body = copy_request(servers.web_port, deployment, people, stream=False)
        n = args.inflight_clients
        for side in servers.sides(args.sides):
            wait_until_quiet()
            process, pid = servers.process_of(side)
            idle_rss = proc_status(pid)["VmRSS"] / 1024

            async def run(side: str = side, process: str = process, pid: int = pid):
                clients = servers.clients(side, n, deployment=deployment, people=people, body=body)
                try:
                    return await inflight(
                        side,
                        clients,
                        window_s=args.inflight_s,
                        settle_s=latency_s,
                        warmup_cap_s=args.warmup_cap_s,
                        stagger_s=latency_s,
                        cpu_of=servers.pids,
                        pg_pids=pg,
                        memory_pid=pid,
                        memory_of=process,
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
                f"{process} peak RSS {result.memory.peak_rss_kb / 1024:.0f} MB "
                f"(idle before: {idle_rss:.0f} MB)",
                flush=True,
            )
    return results


def measure_profile(deployment, people: list[Reviewer], cpu_ms_per_turn: float | None) -> None:
    """The app under cProfile (chat_load/profiling.py) while 50 clients chat with the agent of
    the latency part for --profile seconds, after a warm-up; then where its time went."""
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
