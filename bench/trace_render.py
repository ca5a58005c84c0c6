"""Trace rendering benchmark, part 1: how long `normalize_trace` takes on big real traces.

Run from the repository root:  .venv/bin/python bench/trace_render.py [--runs 5] [--sizes ...]

The traces are made here by MLflow's own serving path (tests/support/mlflow_traces.py, "wide"):
an AGENT root over steps of CHAIN > RETRIEVER (5 documents) or EMBEDDING, CHAT_MODEL,
TOOL > PARSER, LLM; inputs and outputs of a few hundred bytes. Each measurement is a function
`(case, runs) -> Timing` listed in MEASUREMENTS, so a "render" one can sit beside "normalize".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script: make `agents` and `tests` importable

from tests.support import mlflow_traces  # noqa: E402  (after the path is set)

mlflow_traces.use_serving_environment()  # before anything imports mlflow

from agents.traces import normalize_trace  # noqa: E402

DEFAULT_SIZES = (2_000, 50_000)
# What the UI needs (see bench/README.md); shown beside each median.
BUDGET_MS = {2_000: 30.0, 50_000: 1_500.0}


@dataclass
class Case:
    """One trace to measure, made once and shared by every measurement."""

    name: str
    spans: int
    trace: dict
    json_bytes: int


@dataclass
class Timing:
    median_ms: float
    min_ms: float
    max_ms: float


def timed(action: Callable[[], object], runs: int) -> Timing:
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        durations.append((time.perf_counter() - started) * 1000)
    return Timing(statistics.median(durations), min(durations), max(durations))


def measure_normalize(case: Case, runs: int) -> Timing:
    """The raw trace dict to the normalized tree (agents.traces.normalize_trace)."""
    return timed(lambda: normalize_trace(case.trace), runs)


def measure_to_json(case: Case, runs: int) -> Timing:
    """The normalized tree to the JSON text the REST API sends (to_dict + json.dumps)."""
    normalized = normalize_trace(case.trace)
    return timed(lambda: json.dumps(normalized.to_dict()), runs)


MEASUREMENTS: dict[str, Callable[[Case, int], Timing]] = {
    "normalize": measure_normalize,
    "to_dict+dumps": measure_to_json,
}


def make_case(spans: int) -> Case:
    started = time.perf_counter()
    trace = mlflow_traces.generate(f"wide:{spans}")
    took = time.perf_counter() - started
    size = len(json.dumps(trace))
    print(f"made a {spans:,}-span trace with MLflow in {took:.1f} s ({size / 1e6:.1f} MB JSON)")
    return Case(f"wide {spans:,}", spans, trace, size)


def print_table(rows: list[tuple[Case, str, Timing]]) -> None:
    header = (
        f"{'trace':<12} {'JSON MB':>8} {'measurement':<14} {'median ms':>10} {'min':>9} {'max':>9}"
    )
    print(f"\n{header}  budget\n{'-' * (len(header) + 8)}")
    for case, name, timing in rows:
        budget = BUDGET_MS.get(case.spans) if name == "normalize" else None
        note = f"< {budget:,.0f} ms" if budget else ""
        print(
            f"{case.name:<12} {case.json_bytes / 1e6:>8.1f} {name:<14} {timing.median_ms:>10.1f} "
            f"{timing.min_ms:>9.1f} {timing.max_ms:>9.1f}  {note}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES, help="span counts")
    parser.add_argument(
        "--only", choices=sorted(MEASUREMENTS), nargs="+", help="measurements to run (all)"
    )
    args = parser.parse_args(argv)
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    rows = []
    for spans in args.sizes:
        case = make_case(spans)
        for name in args.only or MEASUREMENTS:
            rows.append((case, name, MEASUREMENTS[name](case, args.runs)))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
