"""Trace rendering benchmark: normalize and render big real traces, and paint them in Chromium.

Run from the repository root:  .venv/bin/python bench/trace_render.py [--runs 5] [--sizes ...]
(add --no-browser to skip Chromium).

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
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script: make `agents` and `tests` importable

import django_env  # noqa: E402  (bench/, next to this script)

from tests.support import mlflow_traces  # noqa: E402  (after the path is set)

mlflow_traces.use_serving_environment()  # before anything imports mlflow

# Django on a throw-away SQLite database, for the render and browser measurements, or on the
# scratch PostgreSQL database BENCH_DATABASE_URL names.
VAR_DIR = django_env.configure("bench-trace-")
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.template.loader import render_to_string  # noqa: E402

from agents import selectors  # noqa: E402
from agents.models import Conversation, Deployment, RequestLog  # noqa: E402
from agents.trace_outline import outline_of  # noqa: E402
from agents.trace_views import _span_context  # noqa: E402
from agents.traces import normalize_trace  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
# The page's first contentful paint, waiting for it if it has not happened yet.
FIRST_CONTENTFUL_PAINT_JS = """new Promise(resolve => new PerformanceObserver((list, observer) => {
  const entry = list.getEntriesByName("first-contentful-paint")[0];
  if (entry) { observer.disconnect(); resolve(entry.startTime); }
}).observe({type: "paint", buffered: true}))"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

DEFAULT_SIZES = (2_000, 50_000)
# What the UI needs (see bench/README.md); shown beside each median.
BUDGET_MS = {("normalize", 2_000): 30.0, ("render", 2_000): 100.0}


@dataclass
class Case:
    """One trace to measure, made once and shared by every measurement."""

    name: str
    spans: int
    trace: dict
    json_bytes: int
    outline: dict | None = None


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


def measure_outline(case: Case, runs: int) -> Timing:
    """What saving a turn (or a fetched AgentServer trace) now adds: the trace's outline
    (agents.trace_outline.outline_of: normalize, then the rows) and its JSON text."""
    return timed(lambda: json.dumps(outline_of(case.trace)), runs)


def measure_render(case: Case, runs: int) -> Timing:
    """What opening the Trace costs the server: read the stored outline from the database
    (not the trace), make its tree, render the tree fragment (agents/_trace.html: the roots,
    their children up to 200, deeper levels on demand). Without the per-process cache."""
    turn = store_turn(case)

    def read_and_render() -> None:
        selectors.trace_outlines_forget()  # the per-process cache would hide the read
        outline = selectors.trace_outline_or_raise(turn.databricks_request_id)
        render_to_string("agents/_trace.html", _span_context(turn, outline, outline.roots))

    return timed(read_and_render, runs)


def measure_span(case: Case, runs: int) -> Timing:
    """Opening a span: the last retriever span, read alone from the stored trace (the database
    picks it out), with the outline already read."""
    turn = store_turn(case)
    normalized = normalize_trace(case.trace)
    last = [s for s in normalized.iter_spans() if s.documents is not None][-1]
    request_id = turn.databricks_request_id
    selectors.trace_outline_or_raise(request_id)
    return timed(lambda: selectors.trace_span_or_raise(request_id, last.span_id), runs)


MEASUREMENTS: dict[str, Callable[[Case, int], Timing]] = {
    "normalize": measure_normalize,
    "outline": measure_outline,
    "render": measure_render,
    "span": measure_span,
    "to_dict+dumps": measure_to_json,
}


def measure_chat_turn(runs: int) -> dict[str, float]:
    """A chat turn with the demo agent (a real MLflow trace of 3 spans), through the turn
    service as the chat page sends it; and what making that trace's outline costs within it."""
    from django.contrib.auth.models import Group

    from agents.conversations import conversation_create
    from reviewapp import roles
    from tests.support.demo_agent import run_demo_agent
    from tests.support.turns import chat_turn

    user, _ = get_user_model().objects.get_or_create(username="bench")
    user.groups.add(Group.objects.get_or_create(name=roles.STAKEHOLDER)[0])
    with run_demo_agent() as agent:
        deployment = Deployment.objects.create(
            model_name="main.demo.rag_agent",
            model_version="1",
            query_endpoint=agent.invocations_url("agents_main-demo-rag_agent"),
            agent_schema="chat_completions",
        )
        conversation = conversation_create(deployment=deployment, user=user)

        def one_turn() -> RequestLog:
            return chat_turn(
                deployment=deployment,
                user=user,
                conversation=conversation,
                message="What is MLflow tracing?",
                custom_inputs={},
                history=[],
            )

        one_turn()  # connections and caches warm
        turns = timed(one_turn, runs)
    trace = RequestLog.objects.filter(deployment=deployment).latest("created_at").trace
    outline = timed(lambda: json.dumps(outline_of(trace)), runs * 20)
    return {
        "chat turn median ms": turns.median_ms,
        "its outline median ms": outline.median_ms,
        "outline max ms": outline.max_ms,
        "spans in its trace": len(outline_of(trace)["spans"]),
    }


def store_turn(case: Case) -> RequestLog:
    """A logged turn carrying the big trace, as a chat turn stores it."""
    user, _ = get_user_model().objects.get_or_create(username="bench")
    user.set_password("bench-password")
    user.is_superuser = True
    user.save()
    deployment, _ = Deployment.objects.get_or_create(
        model_name="main.bench.agent",
        model_version="1",
        defaults={"query_endpoint": "http://127.0.0.1:9/serving-endpoints/x/invocations"},
    )
    request_id = f"bench-{case.spans}"
    RequestLog.objects.filter(databricks_request_id=request_id).delete()
    return RequestLog.objects.create(
        deployment=deployment,
        user=user,
        conversation=Conversation.objects.create(deployment=deployment, user=user),
        databricks_request_id=request_id,
        date="2026-01-01",
        timestamp_ms=0,
        status_code=200,
        execution_time_ms=1,
        request="bench",
        response="bench",
        trace=case.trace,
        trace_outline=case.outline,  # as a chat turn is saved
    )


def measure_first_paint(case: Case) -> dict[str, float]:
    """In Chromium, as a reviewer sees it: open the request page, click Trace, wait until the
    tree is painted. The app runs under uvicorn, as `make run` starts it."""
    from playwright.sync_api import sync_playwright

    turn = store_turn(case)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "reviewapp.asgi:application",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ],
        cwd=REPO_ROOT,
        env=dict(os.environ),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/healthz/")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page()
            page.goto(f"{base}/login/")
            page.fill("#id_username", "bench")
            page.fill("#id_password", "bench-password")
            page.click("button[type=submit]")
            page.wait_for_url("**/deployments/")
            started = time.perf_counter()
            page.goto(f"{base}/requests/{turn.databricks_request_id}/")
            page_ms = (time.perf_counter() - started) * 1000
            fcp = page.evaluate(FIRST_CONTENTFUL_PAINT_JS)
            started = time.perf_counter()
            page.click(".trace > summary")
            page.wait_for_selector(".span-row", state="visible")
            # Two animation frames later the tree has been laid out and painted.
            page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            tree_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            page.locator(".span-row").nth(1).click()
            page.wait_for_selector(".span-detail-body")
            detail_ms = (time.perf_counter() - started) * 1000
            rows = page.locator(".span-row").count()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "request page load ms": page_ms,
        "request page first contentful paint ms": fcp,
        "Trace click to painted tree ms": tree_ms,
        "span click to detail ms": detail_ms,
        "span rows on screen": rows,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (our own server)
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def make_case(spans: int) -> Case:
    started = time.perf_counter()
    trace = mlflow_traces.generate(f"wide:{spans}")
    took = time.perf_counter() - started
    size = len(json.dumps(trace))
    print(f"made a {spans:,}-span trace with MLflow in {took:.1f} s ({size / 1e6:.1f} MB JSON)")
    return Case(f"wide {spans:,}", spans, trace, size, outline_of(trace))


def print_table(rows: list[tuple[Case, str, Timing]]) -> None:
    header = (
        f"{'trace':<12} {'JSON MB':>8} {'measurement':<14} {'median ms':>10} {'min':>9} {'max':>9}"
    )
    print(f"\n{header}  budget\n{'-' * (len(header) + 8)}")
    for case, name, timing in rows:
        budget = BUDGET_MS.get((name, case.spans))
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
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium part")
    parser.add_argument("--no-chat", action="store_true", help="skip the demo agent's turns")
    args = parser.parse_args(argv)
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    print(f"Database: {connection.vendor}")
    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    rows, paints = [], []
    for spans in args.sizes:
        case = make_case(spans)
        for name in args.only or MEASUREMENTS:
            rows.append((case, name, MEASUREMENTS[name](case, args.runs)))
        if not args.no_browser and os.path.exists(CHROMIUM):
            paints.append((case, measure_first_paint(case)))
    chat_figures = None if args.no_chat else measure_chat_turn(max(args.runs, 20))
    print_table(rows)
    if chat_figures:
        print("\nChat turn with the demo agent (the turn service, tests.support.turns.chat_turn):")
        for label, value in chat_figures.items():
            print(f"  {label:<40} {value:>10,.3f}")
    for case, figures in paints:
        print(f"\nChromium, {case.name} spans:")
        for label, value in figures.items():
            print(f"  {label:<40} {value:>10,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
