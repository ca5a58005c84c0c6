"""How much CPU one chat turn costs the demo agent: `python -m demo_agent.measure_cost`.

Two views. "server": a real `python -m demo_agent` subprocess (uvicorn, HTTP parsing, JSON,
the agent run, streaming) gets N turns one after another per scenario, and the CPU time the
process used (/proc/<pid>/stat, so Linux only) is divided by N. "in-process": the parts of a
turn timed alone, to show where the time goes: the agent run with MLflow tracing, the same run
with tracing disabled, and serialising the trace.

Streams run with a chunk delay of 0: pauses cost no CPU, and the bench sets its own.
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
QUESTION = "How is feedback posted?"


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def body_for(endpoint: str, stream: bool, trace: bool) -> dict:
    turn = {"input": [{"role": "user", "content": QUESTION}]} if "responses" in endpoint else {}
    turn = turn or {"messages": [{"role": "user", "content": QUESTION}]}
    return {**turn, "stream": stream, "databricks_options": {"return_trace": trace}}


@contextlib.contextmanager
def demo_agent_process() -> Iterator[tuple[subprocess.Popen, str]]:
    port = 18000 + os.getpid() % 1000
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "demo_agent", "--port", str(port)]
        argv += ["--stream-chunk-delay-ms", "0", "--feedback-log", f"{tmp}/feedback.jsonl"]
        process = subprocess.Popen(argv, cwd=REPO_ROOT)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    httpx.get(f"{base}/health", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            yield process, base
        finally:
            process.terminate()
            process.wait(timeout=10)


async def paced_turns(base: str, body: dict, turns: int, concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                response = await client.post("/serving-endpoints/demo/invocations", json=body)
                response.raise_for_status()

        await asyncio.gather(*(one() for _ in range(turns)))


def server_costs(turns: int) -> list[tuple[str, float]]:
    results = []
    with demo_agent_process() as (process, base), httpx.Client(base_url=base, timeout=30) as client:
        for endpoint, stream, trace in itertools.product(
            ("demo", "demo-responses"), (False, True), (False, True)
        ):
            url = f"/serving-endpoints/{endpoint}/invocations"
            body = body_for(endpoint, stream, trace)
            for _ in range(20):  # warm-up: imports, caches
                client.post(url, json=body).raise_for_status()
            before = process_cpu_s(process.pid)
            for _ in range(turns):
                client.post(url, json=body).raise_for_status()
            used = process_cpu_s(process.pid) - before
            name = f"{endpoint:15} stream={stream!s:5} return_trace={trace!s:5}"
            results.append((name, used / turns * 1000))
        # As the bench runs it: the default 15 ms between events, many streams at once.
        client.post("/_demo/config", json={"stream_chunk_delay_ms": 15}).raise_for_status()
        before = process_cpu_s(process.pid)
        asyncio.run(paced_turns(base, body_for("demo", True, True), turns, concurrency=50))
        used = process_cpu_s(process.pid) - before
        results.append(("demo, streamed at 15 ms/event, 50 at once", used / turns * 1000))
    return results


def cpu_ms(call: Callable[[], object], repeat: int) -> float:
    """Median CPU milliseconds of `call`, in batches of `repeat`."""
    samples = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(repeat):
            call()
        samples.append((time.process_time() - started) / repeat * 1000)
    return statistics.median(samples)


def in_process_costs(repeat: int) -> list[tuple[str, float]]:
    import mlflow

    from demo_agent.agent import run_agent
    from demo_agent.schema_requests import parse_turn_request
    from demo_agent.schemas import AgentSchema
    from demo_agent.streams import planned_events, sse

    body = body_for("demo", stream=False, trace=True)
    request = parse_turn_request(body, AgentSchema.CHAT_COMPLETIONS)
    counter = iter(range(10**9))

    def turn() -> tuple[dict, dict | None]:
        return run_agent(request, f"cost-{next(counter)}", "demo")

    reply, trace = turn()
    results = [("agent run, MLflow tracing on (trace made)", cpu_ms(turn, repeat))]
    results.append(("json.dumps of the trace", cpu_ms(lambda: json.dumps(trace), repeat)))
    events = planned_events(AgentSchema.CHAT_COMPLETIONS, reply, "rid", trace, None)

    def encode() -> list[str]:
        return [sse(e) for e in events]

    results.append(("SSE-encoding the stream's events", cpu_ms(encode, repeat)))
    fluent_log = logging.getLogger("mlflow.tracing.fluent")
    level = fluent_log.level
    # Untraced, update_current_trace warns on every call that there is no trace.
    fluent_log.setLevel(logging.ERROR)
    mlflow.tracing.disable()
    try:
        results.append(("agent run, MLflow tracing off", cpu_ms(turn, repeat)))
    finally:
        mlflow.tracing.enable()
        fluent_log.setLevel(level)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo_agent.measure_cost")
    parser.add_argument("--turns", type=int, default=200, help="turns per server scenario")
    parser.add_argument("--repeat", type=int, default=200, help="calls per in-process sample")
    args = parser.parse_args(argv)
    print("CPU per turn, server process (ms):")
    for name, ms in server_costs(args.turns):
        print(f"  {name}  {ms:6.2f}")
    print("CPU per call, in-process (ms):")
    for name, ms in in_process_costs(args.repeat):
        print(f"  {name:45}  {ms:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
