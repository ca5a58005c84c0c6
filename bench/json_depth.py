"""What the JSON depth cap (reviewapp/jsonlimits.py) adds to reading an agent's reply.

Run from the repository root:  .venv/bin/python bench/json_depth.py [--runs 7] [--mb 1 50]

Replies are chat completions carrying `databricks_output.trace`, the trace made by MLflow's own
serving path (tests/support/mlflow_traces.py, "wide"), sized to about 1 MB and 50 MB, as text
(what agents/client.py decodes). For each it times `json.loads` (before the cap), the depth
measure alone, and `jsonlimits.loads` (measure + decode, what a turn now pays). A last row is
the measure's worst case, far from any real reply: the same size of brackets only, every value
nested 60 levels deep (one peeling pass per level over most of the text).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script: make `reviewapp` and `tests` importable

from tests.support import mlflow_traces  # noqa: E402  (after the path is set)

mlflow_traces.use_serving_environment()  # before anything imports mlflow
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
os.environ.setdefault("SECRET_KEY", "bench-" + "k" * 50)

import django  # noqa: E402

django.setup()

from reviewapp import jsonlimits  # noqa: E402

BYTES_PER_SPAN = 1200  # about what a "wide" span weighs as JSON


def reply_text(target_mb: float) -> str:
    spans = max(10, int(target_mb * 1e6 / BYTES_PER_SPAN))
    trace = mlflow_traces.generate(f"wide:{spans}")
    reply = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "An answer."}}],
        "databricks_output": {"databricks_request_id": "bench", "trace": trace},
    }
    return json.dumps(reply)


def worst_case_text(size: int) -> str:
    item = "[" * 60 + "]" * 60
    return "[" + ",".join([item] * (size // (len(item) + 1))) + "]"


def timed(action: Callable[[], object], runs: int) -> tuple[float, float, float]:
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        durations.append((time.perf_counter() - started) * 1000)
    return statistics.median(durations), min(durations), max(durations)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--mb", type=float, nargs="+", default=[1, 50])
    args = parser.parse_args(argv)
    limit = jsonlimits.max_depth()
    cases = []
    for mb in args.mb:
        started = time.perf_counter()
        text = reply_text(mb)
        took = time.perf_counter() - started
        print(f"made a {len(text) / 1e6:.1f} MB reply with MLflow in {took:.1f} s")
        cases.append((f"reply {len(text) / 1e6:.1f} MB", text))
    biggest = max(len(text) for _, text in cases)
    cases.append((f"worst {biggest / 1e6:.1f} MB", worst_case_text(biggest)))
    print(f"\nJSON_MAX_DEPTH={limit}, {args.runs} runs, ms")
    print(f"{'case':<18} {'measurement':<22} {'median':>9} {'min':>9} {'max':>9}")
    measurements = {
        "json.loads": json.loads,
        "depth measure": lambda text: jsonlimits.check_depth(text, limit),
        "jsonlimits.loads": lambda text: jsonlimits.loads(text, limit=limit),
    }
    for name, text in cases:
        for label, action in measurements.items():
            median, low, high = timed(lambda a=action, t=text: a(t), args.runs)
            print(f"{name:<18} {label:<22} {median:>9.1f} {low:>9.1f} {high:>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
