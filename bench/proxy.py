"""Chat proxy benchmark: what the app's async proxy adds to an agent's latency.

Run from the repository root:
    .venv/bin/python bench/proxy.py              # all parts, ~7 min
    .venv/bin/python bench/proxy.py --quick      # smaller and shorter, ~1.5 min
    .venv/bin/python bench/proxy.py --only inflight --inflight-clients 1000 --inflight-s 30

Every figure is measured on both sides in the same run, on the same machine: a turn through the
app (POST /api/v1/deployments/{id}/chat/ with a reviewer's DRF token, into a conversation its
first turn opened, served by ONE `uvicorn reviewapp.asgi:application --lifespan off
--no-access-log` process) and the very same request straight to the demo agent (the body the app
sent, read back from the turn's request_raw). The clients (chat_load/wire.py) are one asyncio
HTTP/1.1 keep-alive connection each, in this process, sending turns back to back.

Parts (--only picks some):
  latency   demo agent with no latency; per --clients count, rounds alternating direct and via
            app (same load on the box): p50/p90/p99 of each, the difference and the ratio.
  inflight  demo agent answering after --agent-latency-ms (3 s); --inflight-clients (1,000)
            clients each back to back, direct then via app: turns/s in a window vs the ideal
            clients/latency, errors by kind, the app's peak RSS (VmRSS sampled, VmHWM).
  stream    a deployment with streaming on: time to the first answer text, through the app
            (its SSE `event: delta`) and direct (the first chunk with content).
  --profile S  after the parts, the app under cProfile (all threads) for S seconds of 50
            clients, and where its time goes per turn.

Needs PostgreSQL (postgres://postgres@127.0.0.1:5432/reviewapp_bench, created and migrated if
missing; --fresh-db drops it first) and Redis db 14 (the app's broker; no worker runs). The
bench's users, deployments and turns are its own (model main.bench.proxy_agent); its turns are
deleted before and after each run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a script: make `agents` importable; bench/ itself is on sys.path (the script's directory).
sys.path.insert(0, str(REPO_ROOT))

from harness import config  # noqa: E402  (after the path is set)
from harness.config import DEFAULT_BROKER_URL, DEFAULT_DATABASE_URL  # noqa: E402
from harness.machine import raise_open_files_limit  # noqa: E402
from harness.processes import DemoAgent  # noqa: E402
from ratings import code_version  # noqa: E402

PARTS = ("latency", "inflight", "stream")
# name: (full run, --quick); a flag given on the command line wins over both.
SIZES = {
    "clients": ([1, 50], [50]),
    "rounds": (5, 2),
    "round_s": (4.0, 2.0),
    "inflight_clients": (1000, 100),
    "inflight_s": (30.0, 8.0),
    "stream_clients": ([1, 50], [20]),
    "warmup_cap_s": (120.0, 15.0),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: about 1.5 minutes")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--clients", type=int, nargs="+", help="latency: client counts (1 50)")
    parser.add_argument("--rounds", type=int, help="latency, stream: rounds per side (5)")
    parser.add_argument("--round-s", type=float, help="... seconds of each round (4)")
    parser.add_argument("--warmup-turns", type=int, default=3, help="unrecorded turns per client")
    parser.add_argument("--inflight-clients", type=int, help="inflight: clients (1000)")
    parser.add_argument("--inflight-s", type=float, help="inflight: measured window (30 s)")
    parser.add_argument(
        "--agent-latency-ms", type=int, default=3000, help="inflight: the agent's latency"
    )
    parser.add_argument(
        "--warmup-cap-s",
        type=float,
        help="inflight: open the window after this (120 s) even if some clients had no answer",
    )
    parser.add_argument("--timeout-s", type=float, default=90, help="a client's wait per turn")
    parser.add_argument(
        "--stream-clients", type=int, nargs="+", help="stream: client counts (1 50)"
    )
    parser.add_argument(
        "--chunk-delay-ms",
        type=int,
        default=15,
        help="stream: the demo agent's pause between events (its --stream-chunk-delay-ms)",
    )
    parser.add_argument("--users", type=int, default=50, help="reviewers the clients are spread on")
    parser.add_argument(
        "--db-pool-size",
        type=int,
        help="experiment: serve the app with this DATABASE_POOL_SIZE (the app's default is 8)",
    )
    parser.add_argument(
        "--profile", type=float, metavar="S", help="also profile the app for S seconds"
    )
    parser.add_argument(
        "--quiet-below",
        type=float,
        help="before each phase, wait until other processes keep the machine below this %% busy",
    )
    parser.add_argument("--quiet-wait", type=float, default=300, help="... for at most this (s)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir of logs")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--fresh-db", action="store_true", help="drop and re-create it first")
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help="a dedicated Redis db")
    # harness.processes.start_web reads these: the app exactly as run_all.py serves it.
    parser.set_defaults(server="uvicorn", conn_max_age=None, db_reuse_max=None)
    args = parser.parse_args(argv)
    for name, (full, quick) in SIZES.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    for name in ("rounds", "inflight_clients", "users", "warmup_turns"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if min(args.clients + args.stream_clients) < 1 or args.round_s <= 0 or args.inflight_s <= 0:
        parser.error("client counts and durations must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)  # --help exits here, before any database or process is touched
    config.configure(args, prefix="bench-proxy-")
    # These import Django models: only after django.setup() in configure().
    from chat_load.report import print_inflight, print_rounds
    from chat_load.runs import measure_inflight, measure_profile, measure_rounds
    from chat_load.setup import set_up, turns_delete
    from harness.database import PgBackends

    clients = max([*args.clients, args.inflight_clients, *args.stream_clients])
    raise_open_files_limit(3 * clients + 1000)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    if args.db_pool_size:
        os.environ["DATABASE_POOL_SIZE"] = str(args.db_pool_size)  # the app processes inherit it
    experiment = f"DATABASE_POOL_SIZE={args.db_pool_size}" if args.db_pool_size else ""
    print(f"code: {code_version()}; {time.strftime('%Y-%m-%d %H:%M')}")
    if experiment:
        print(f"EXPERIMENT, not the app's settings: {experiment}")
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}; "
        f"database {args.database_url}, broker {args.broker_url}; logs in {config.VAR_DIR}",
        flush=True,
    )
    started = time.monotonic()
    agents: dict[str, DemoAgent] = {}
    rounds, streams, inflights, deployments, pg = [], [], [], {}, None
    try:
        chunk_delay = ("--stream-chunk-delay-ms", str(args.chunk_delay_ms))
        agents["fast"] = agents["stream"] = DemoAgent(chunk_delay, name="demo-agent-0ms")
        if "inflight" in args.only:
            flags = ("--latency-ms", str(args.agent_latency_ms))
            agents["slow"] = DemoAgent(flags, name=f"demo-agent-{args.agent_latency_ms}ms")
        people, deployments = set_up(agents, args.users)
        pg = PgBackends()
        if "latency" in args.only:
            print("\nAdded latency, demo agent without latency:", flush=True)
            rounds = measure_rounds(deployments["fast"], agents["fast"], people, pg, stream=False)
        if "stream" in args.only:
            print("\nTime to first token, streaming deployment:", flush=True)
            streams = measure_rounds(deployments["stream"], agents["fast"], people, pg, stream=True)
        if "inflight" in args.only:
            print(f"\nTurns in flight, agent latency {args.agent_latency_ms} ms:", flush=True)
            inflights = measure_inflight(deployments["slow"], agents["slow"], people, pg)
        if args.profile:
            print("\nProfiling the app:", flush=True)
            saturated = [r for r in rounds if r.clients == max(args.clients)]
            per_turn = None
            if saturated:
                r = saturated[0]
                per_turn = (
                    1000 * r.cpu["app"].seconds["app"] / max(1, len(r.results["app"].replies))
                )
            measure_profile(deployments["fast"], people, per_turn)
    finally:
        for agent in {id(a): a for a in agents.values()}.values():
            agent.stop()
        if pg is not None:
            pg.close()
        if deployments:
            with contextlib.suppress(Exception):
                turns_delete(list(deployments.values()))
    print_rounds(rounds, ttft=False)
    print_rounds(streams, ttft=True)
    print_inflight(inflights, args.agent_latency_ms)
    if experiment:
        print(f"\nEXPERIMENT, not the app's settings: {experiment}")
    print(f"\ncode at the end: {code_version()}; took {time.monotonic() - started:.0f} s")
    if not args.keep_logs:
        shutil.rmtree(config.VAR_DIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
