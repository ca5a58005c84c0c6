"""Batch-run benchmark (issue 14): rows through Celery lanes to the demo agent.

    .venv/bin/python bench/runs.py                      # 10,000 rows, concurrency 64, 2 workers
    .venv/bin/python bench/runs.py --rows 2000 --traces

Starts the demo agent answering in --latency-ms (200; without traces unless --traces: making
one is about half of the agent's CPU on this small machine), two Celery workers (prefork, two
processes each; RUN_LANE_WIDTH 32: two lanes) on Redis, and a fresh PostgreSQL database
(postgres://postgres@127.0.0.1:5432/reviewapp_runs, dropped and made again). Creates a batch
run of --rows rows with `evaluation.runs.run_create`, as the API does, and waits for it to end.

Prints rows/s against the ideal, concurrency ÷ agent latency (target: at least 80 % of it),
and each worker's RSS (main process and pool children) idle, when a tenth of the rows is done
(every lane has worked), at its peak and at the end (target: flat after the first tenth).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/reviewapp_runs"
BROKER_URL = "redis://127.0.0.1:6379/13"
TARGET_SHARE = 0.8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2, help="pool processes per worker")
    parser.add_argument("--traces", action="store_true", help="the agent makes MLflow traces")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    return parser.parse_args()


def rss_mb(pid: int) -> float:
    """The process's RSS plus its children's (a prefork worker's pool), in MB."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def main() -> int:
    args = parse_args()
    from harness.config import ensure_database

    ensure_database(args.database_url, fresh=True)
    var_dir = tempfile.mkdtemp(prefix="bench-runs-")
    env = {**os.environ, "DATABASE_URL": args.database_url, "CELERY_BROKER_URL": BROKER_URL,
           "VAR_DIR": var_dir, "DJANGO_SETTINGS_MODULE": "reviewapp.settings",
           "LOG_LEVEL": "WARNING"}  # fmt: skip
    env.setdefault("SECRET_KEY", "bench-" + "k" * 50)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from reviewapp.celery import app

    app.control.purge()
    port = 8791
    agent_argv = [sys.executable, "-m", "demo_agent", "--port", str(port),
                  "--latency-ms", str(args.latency_ms)]  # fmt: skip
    if not args.traces:
        agent_argv.append("--no-traces")
    logs = Path(var_dir)
    processes = [subprocess.Popen(agent_argv, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                  stderr=(logs / "agent.log").open("wb"))]  # fmt: skip
    workers = []
    for n in range(args.workers):
        argv = [sys.executable, "-m", "celery", "-A", "reviewapp", "worker", "--pool", "prefork",
                "--concurrency", str(args.processes), "-n", f"bench{n}@%h", "--without-gossip",
                "--without-mingle", "--loglevel", "warning"]  # fmt: skip
        worker = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=(logs / f"worker{n}.log").open("wb"))  # fmt: skip
        processes.append(worker)
        workers.append(worker)
    try:
        return _measure(args, port, workers)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def _measure(args, port: int, workers) -> int:
    import httpx
    from django.contrib.auth import get_user_model

    from agents.models import Deployment
    from evaluation import datasets, runs
    from evaluation.models import RowStatus, Run, RunStatus

    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.2)
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
    Deployment.objects.create(
        model_name="main.bench.runs_agent", model_version="1", display_name="bench",
        query_endpoint=f"http://127.0.0.1:{port}/serving-endpoints/agents_bench/invocations",
        agent_schema="chat_completions", feedback_sink="none",
    )  # fmt: skip
    body = "\n".join(json.dumps({"question": f"What is MLflow tracing, case {i}?"})
                     for i in range(args.rows)).encode()  # fmt: skip
    datasets.dataset_upload(name="bench", file=io.BytesIO(body), file_name="b.jsonl", user=user)
    time.sleep(3)  # the workers are up (they connect to Redis at start)
    baseline = [rss_mb(w.pid) for w in workers]
    started = time.monotonic()
    run = runs.run_create(user=user, spec={
        "name": "bench", "deployment": "bench", "data": "bench",
        "column_mapping": {"message": "${data.question}"}, "concurrency": args.concurrency,
    })  # fmt: skip
    created_s = time.monotonic() - started
    peaks, warm = list(baseline), None
    while True:
        time.sleep(0.5)
        peaks = [max(p, rss_mb(w.pid)) for p, w in zip(peaks, workers, strict=True)]
        status = Run.objects.filter(pk=run.pk).values_list("status", flat=True).get()
        if warm is None and run.rows.filter(status=RowStatus.DONE).count() >= args.rows // 10:
            warm = [rss_mb(w.pid) for w in workers]  # a tenth done: every lane has worked
        if status != RunStatus.RUNNING:
            break
    elapsed = time.monotonic() - started
    end = [rss_mb(w.pid) for w in workers]
    failed = run.rows.exclude(error="").count()
    ideal = args.concurrency / (args.latency_ms / 1000)
    rate = args.rows / elapsed
    print(f"rows {args.rows}, concurrency {args.concurrency}, agent latency {args.latency_ms} ms"
          f" ({'with' if args.traces else 'without'} traces), {args.workers} workers x "
          f"{args.processes} processes")  # fmt: skip
    print(f"run created in {created_s:.2f} s; ended {status} after {elapsed:.1f} s; "
          f"{failed} row(s) failed")  # fmt: skip
    verdict = "met" if rate >= TARGET_SHARE * ideal else "MISSED"
    print(f"throughput {rate:.1f} rows/s = {rate / ideal:.0%} of concurrency/latency "
          f"({ideal:.0f}/s); target >= {TARGET_SHARE:.0%}: {verdict}")  # fmt: skip
    warm = warm or baseline
    for n, (b, w, p, e) in enumerate(zip(baseline, warm, peaks, end, strict=True)):
        print(f"worker {n} RSS: idle {b:.0f} MB, at 10 % {w:.0f} MB, peak {p:.0f} MB, "
              f"end {e:.0f} MB (growth after 10 %: {e - w:+.0f} MB)")  # fmt: skip
    return 0 if status == RunStatus.COMPLETED and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
