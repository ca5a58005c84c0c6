"""Chat proxy benchmark: what the app adds to an agent's latency, beside a bare proxy and LiteLLM.

The app's async chat proxy, a bare asyncio proxy (the floor) and LiteLLM's proxy, against the
same agent in the same run.

Run from the repository root:
    .venv/bin/python bench/proxy.py              # all parts and sides
    .venv/bin/python bench/proxy.py --quick      # smaller and shorter
    .venv/bin/python bench/proxy.py --only inflight --inflight-clients 1000 --inflight-s 30
    .venv/bin/python bench/proxy.py --sides direct app   # without the peers

Sides (--sides picks some), each measured on the same machine against the same demo agent:
  direct   the request straight to the demo agent: the body the app sent, read back from the
           turn's request_raw (with databricks_options.return_trace, so the reply carries the
           agent's MLflow trace).
  bare     the same request through bench/bare_proxy.py: aiohttp, one shared ClientSession, no
           work but forwarding (streams chunk by chunk). The floor of a proxy in Python.
  litellm  the same body (plus `model`) to LiteLLM's proxy (`litellm --config ... --num_workers
           1`, a master key of the run's, no database), which routes it with its OpenAI
           provider to the agent's /serving-endpoints/<name>/chat/completions.
  app      a turn through the app: POST /api/v1/deployments/{id}/chat/ with a reviewer's DRF
           token, into a conversation its first turn opened, served by ONE `uvicorn
           reviewapp.asgi:application --lifespan off --no-access-log` process.
bare and litellm run from a virtualenv of the benchmark's own (chat_load/peers.py), made and
filled on first use; one that cannot be installed or started here is reported, not measured.
The clients (chat_load/wire.py) are one asyncio HTTP/1.1 keep-alive connection each, in this
process, sending turns back to back.

Parts (--only picks some):
  latency   demo agent answering in --agent-ms (200 ms) with its MLflow trace; per --clients
            count (1 and 50), rounds alternating the sides (same load on the box): p50/p90/p99
            of each, what each adds to direct, turns/s, the CPU of each proxy process a turn.
  stream    a deployment with streaming on, the same agent: time to the first answer text
            (the app's SSE `event: delta`, the others' first chunk with content), at
            --stream-clients (1 and 20).
  inflight  demo agent answering after --inflight-agent-ms (3 s); --inflight-clients (1,000)
            clients each back to back, one side after the other: turns/s in a window vs the
            ideal clients/latency, errors by kind, the side's peak RSS (VmRSS sampled, VmHWM).
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

from chat_load.peers import PEERS, Peers  # noqa: E402  (after the path is set)
from chat_load.servers import SIDES  # noqa: E402
from harness import config  # noqa: E402
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
    "stream_clients": ([1, 20], [20]),
    "warmup_cap_s": (120.0, 15.0),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, short rounds")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument(
        "--sides", nargs="+", choices=SIDES, default=list(SIDES), help="in this order (all)"
    )
    parser.add_argument("--clients", type=int, nargs="+", help="latency: client counts (1 50)")
    parser.add_argument("--rounds", type=int, help="latency, stream: rounds per side (5)")
    parser.add_argument("--round-s", type=float, help="... seconds of each round (4)")
    parser.add_argument("--warmup-turns", type=int, default=3, help="unrecorded turns per client")
    parser.add_argument(
        "--agent-ms", type=int, default=200, help="latency, stream: the agent's latency (200)"
    )
    parser.add_argument("--inflight-clients", type=int, help="inflight: clients (1000)")
    parser.add_argument("--inflight-s", type=float, help="inflight: measured window (30 s)")
    parser.add_argument(
        "--inflight-agent-ms",
        "--agent-latency-ms",  # its name before the latency part had an agent latency too
        type=int,
        default=3000,
        help="inflight: the agent's latency (3000)",
    )
    parser.add_argument(
        "--warmup-cap-s",
        type=float,
        help="inflight: open the window after this (120 s) even if some clients had no answer",
    )
    parser.add_argument("--timeout-s", type=float, default=90, help="a client's wait per turn")
    parser.add_argument(
        "--stream-clients", type=int, nargs="+", help="stream: client counts (1 20)"
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
    if args.agent_ms < 0:
        parser.error("--agent-ms must not be negative")
    args.sides = list(dict.fromkeys(args.sides))  # each once, in the order given
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
        f"database {args.database_url}, broker {args.broker_url}; logs in {config.VAR_DIR}; "
        f"sides {' '.join(args.sides)}",
        flush=True,
    )
    started = time.monotonic()
    peers = Peers([side for side in args.sides if side in PEERS])
    peers.prepare()
    agents: dict[str, DemoAgent] = {}
    rounds, streams, inflights, deployments, pg = [], [], [], {}, None
    try:
        flags = ("--latency-ms", str(args.agent_ms), "--stream-chunk-delay-ms")
        agent = DemoAgent((*flags, str(args.chunk_delay_ms)), name=f"demo-agent-{args.agent_ms}ms")
        agents["latency"] = agents["stream"] = agent
        if "inflight" in args.only:
            flags = ("--latency-ms", str(args.inflight_agent_ms))
            agents["inflight"] = DemoAgent(flags, name=f"demo-agent-{args.inflight_agent_ms}ms")
        people, deployments = set_up(agents, args.users)
        pg = PgBackends()
        for part, stream in (("latency", False), ("stream", True)):
            if part in args.only:
                print(f"\n{part}: demo agent answering in {args.agent_ms} ms", flush=True)
                found = measure_rounds(
                    part, deployments[part], agent, people, pg, peers, stream=stream
                )
                (streams if stream else rounds).extend(found)
        if "inflight" in args.only:
            print(f"\nTurns in flight, agent latency {args.inflight_agent_ms} ms:", flush=True)
            inflights = measure_inflight(
                deployments["inflight"], agents["inflight"], people, pg, peers
            )
        if args.profile:
            print("\nProfiling the app:", flush=True)
            saturated = [r for r in rounds if r.clients == max(args.clients) and "app" in r.sides]
            per_turn = saturated[0].proxy_cpu_ms("app") if saturated else None
            measure_profile(deployments["latency"], people, per_turn)
    finally:
        for each in {id(a): a for a in agents.values()}.values():
            each.stop()
        if pg is not None:
            pg.close()
        if deployments:
            with contextlib.suppress(Exception):
                turns_delete(list(deployments.values()))
    print_rounds(rounds, ttft=False, agent_ms=args.agent_ms)
    print_rounds(streams, ttft=True, agent_ms=args.agent_ms)
    print_inflight(inflights, args.inflight_agent_ms)
    for side, why in peers.unavailable.items():
        print(f"\n{side}: NOT MEASURED: {why}")
    if experiment:
        print(f"\nEXPERIMENT, not the app's settings: {experiment}")
    print(f"\ncode at the end: {code_version()}; took {time.monotonic() - started:.0f} s")
    if not args.keep_logs:
        shutil.rmtree(config.VAR_DIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
