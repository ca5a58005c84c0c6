"""Logs benchmark (issue 13): a 30-day dashboard and full exports over a big request log.

    .venv/bin/python bench/logs.py                             # 1,000,000 turns, 300,000 ratings
    .venv/bin/python bench/logs.py --turns 100000 --ratings 30000 --formats jsonl

Fills its own PostgreSQL database (default postgres://postgres@127.0.0.1:5432/reviewapp_logs,
created and migrated if missing; kept for the next run when it already holds the same numbers)
with one deployment's turns spread over the last 30 days, each a copy of the real MLflow
fixture turn (../shared/fixtures/traces/rag_simple.json and its response: ~5 KB of trace and
~5 KB of response body, and the outline the app stores), varied in id, time, latency and
status; and current thumbs ratings on the first turns. Then:

- the deployment's dashboard for the last 30 days, per day, as `dashboards.figures.dashboard`
  makes it (the page's server work without the template): with an empty cache, then again
  (closed days cached);
- `manage.py export_logs --kind requests --format F --out FILE --quiet` in a child process per
  format: rows/s, and its peak RSS beside a child that only sets Django up (the growth).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
FIXTURES = Path(os.environ.get("SHARED_DIR", REPO_ROOT.parent / "shared")) / "fixtures"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/reviewapp_logs"
DASHBOARD_TARGET_MS = 500.0
EXPORT_TARGET_ROWS_S = 50_000.0
RSS_TARGET_MB = 100.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1_000_000)
    parser.add_argument("--ratings", type=int, default=300_000)
    parser.add_argument("--formats", nargs="*", default=["parquet", "jsonl"])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--dashboard-runs", type=int, default=3)
    return parser.parse_args()


def setup_django(database_url: str) -> None:
    from harness.config import ensure_database

    ensure_database(database_url, fresh=False)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="reviewapp.settings",
        DATABASE_URL=database_url,
        VAR_DIR=tempfile.mkdtemp(prefix="bench-logs-"),
    )
    os.environ.setdefault("SECRET_KEY", "bench-" + "k" * 50)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill(turns: int, ratings: int) -> int:
    """The deployment's id, its log filled (again, unless it already holds these numbers)."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from agents.models import Deployment, RequestLog
    from agents.trace_outline import outline_of
    from feedback.models import Rating
    from reviewapp import pg_loop

    deployment, _ = Deployment.objects.get_or_create(
        model_name="main.bench.logs_agent",
        model_version="1",
        defaults={"query_endpoint": "https://example.com/serving-endpoints/logs/invocations"},
    )
    reviewer, _ = get_user_model().objects.get_or_create(username="bench-logs-reviewer")
    have = RequestLog.objects.filter(deployment=deployment).count()
    rated = Rating.objects.filter(deployment=deployment).count()
    if (have, rated) == (turns, ratings):
        print(f"the log holds {turns:,} turns and {ratings:,} ratings already")
        return deployment.pk
    RequestLog.objects.filter(deployment=deployment).delete()
    trace = json.loads((FIXTURES / "traces" / "rag_simple.json").read_text())
    response = json.loads((FIXTURES / "traces" / "rag_simple.response.json").read_text())
    request = {"messages": [{"role": "user", "content": "How does MLflow tracing show documents?"}]}
    prototype = RequestLog(
        deployment=deployment,
        user=reviewer,
        databricks_request_id="x",
        timestamp_ms=0,
        status_code=200,
        execution_time_ms=0,
        request=request["messages"][0]["content"],
        response=response["choices"][0]["message"]["content"],
        request_raw=json.dumps(request),
        response_raw=json.dumps(response),
        trace=trace,
        trace_outline=outline_of(trace),
        request_metadata={"model": deployment.model_name, "version": "1"},
    )
    fields = [f for f in RequestLog._meta.concrete_fields if not f.primary_key]
    varying = {  # per row i of N, over the last 30 days, oldest first
        "databricks_request_id": "'bench-' || i",
        "client_request_id": "md5(i::text)",
        "created_at": "now() - interval '30 days' + (i * interval '30 days' / %(n)s)",
        "date": "(now() - interval '30 days' + (i * interval '30 days' / %(n)s))::date",
        "timestamp_ms": "(extract(epoch from now() - interval '30 days' "
        "+ (i * interval '30 days' / %(n)s)) * 1000)::bigint",
        "execution_time_ms": "(200 + 800 * random() ^ 3)::int",
        "status_code": "CASE WHEN mod(i, 50) = 0 THEN 500 ELSE 200 END",
        "error": "CASE WHEN mod(i, 50) = 0 THEN 'The agent answered HTTP 500.' ELSE '' END",
        "incomplete": "mod(i, 97) = 0",
    }  # fmt: skip
    prepared = pg_loop.db_values(fields, prototype, add=True)
    values = dict(zip([f.name for f in fields], prepared, strict=True))
    expressions, params = [], {"n": turns}
    for f in fields:
        if f.name in varying:
            expressions.append(varying[f.name])
        else:
            expressions.append(f"%({f.name})s")
            params[f.name] = values[f.name]
    columns = ", ".join(f'"{f.column}"' for f in fields)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {RequestLog._meta.db_table} ({columns}) "  # noqa: S608
            f"SELECT {', '.join(expressions)} FROM generate_series(1, %(n)s) AS i",
            params,
        )
        cursor.execute(
            f"INSERT INTO {Rating._meta.db_table} (request_id, deployment_id, reviewer_id, "  # noqa: S608
            "source_id, source_type, text_assessment, retrieval_assessments, is_current, "
            "created_at) SELECT id, deployment_id, %(reviewer)s, 'bench-logs-reviewer', 'human', "
            "jsonb_build_object('ratings', jsonb_build_object('answer_correct', "
            "jsonb_build_object('value', CASE WHEN mod(id, 10) < 3 THEN 'negative' "
            "ELSE 'positive' END))), '[]'::jsonb, true, created_at + interval '1 hour' "
            f"FROM {RequestLog._meta.db_table} WHERE deployment_id = %(deployment)s "
            "ORDER BY id LIMIT %(ratings)s",
            {"reviewer": reviewer.pk, "deployment": deployment.pk, "ratings": ratings},
        )
        cursor.execute(f"ANALYZE {RequestLog._meta.db_table}")
        cursor.execute(f"ANALYZE {Rating._meta.db_table}")
    took = time.perf_counter() - started
    print(f"filled {turns:,} turns and {ratings:,} ratings in {took:.0f} s")
    return deployment.pk


def measure_dashboard(deployment_id: int, runs: int) -> tuple[list[float], list[float]]:
    from django.core.cache import cache

    from agents.models import Deployment
    from dashboards.figures import Group, dashboard
    from dashboards.ranges import RangeForm
    from feedback.label_values import label_schemas_for

    deployment = Deployment.objects.get(pk=deployment_id)
    group = Group(str(deployment), [deployment.pk], label_schemas_for(deployment))
    form = RangeForm({"range": "30d", "bucket": "day"})
    assert form.is_valid(), form.errors
    window = form.cleaned_data["window"]
    cold, warm = [], []
    for _ in range(runs):
        cache.clear()
        for times in (cold, warm):
            started = time.perf_counter()
            board = dashboard([group], window, with_turns_table=True)
            times.append((time.perf_counter() - started) * 1000)
    turns = sum(v or 0 for v in board.charts[0].series[0].values)
    print(f"  the dashboard's 31 days hold {turns:,.0f} turns")
    return cold, warm


CHILD = """
import os, resource, sys, time
sys.path.insert(0, {repo!r})
import django
django.setup()
from django.core.management import call_command
from inference_tables import exports, formats  # pyarrow and the app loaded: not the export's
from inference_tables.management.commands import export_logs
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if {export!r}:
    started = time.perf_counter()
    call_command(
        "export_logs", "--kind", "requests", "--format", {fmt!r}, "--out", {out!r}, "--quiet"
    )
    took = time.perf_counter() - started
else:
    took = 0.0
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, took)
"""


def measure_export(fmt: str) -> tuple[float, float, int]:
    """(seconds, peak RSS growth in MB, file size) of one export in a child process."""
    out = Path(tempfile.mkdtemp(prefix="bench-logs-out-")) / f"requests.{fmt}"
    code = CHILD.format(repo=str(REPO_ROOT), export=True, fmt=fmt, out=str(out))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base_kb, peak_kb, took = done.stdout.split()
    size = out.stat().st_size
    out.unlink()
    return float(took), (int(peak_kb) - int(base_kb)) / 1024, size


def main() -> None:
    args = parse_args()
    setup_django(args.database_url)
    from django.db import connection

    print(f"PostgreSQL {connection.cursor().connection.info.server_version}, {os.cpu_count()} CPUs")
    deployment_id = fill(args.turns, args.ratings)
    cold, warm = measure_dashboard(deployment_id, args.dashboard_runs)
    runs = ", ".join(f"{t:.0f}" for t in cold)
    print(
        f"dashboard, 30 days per day: empty cache {min(cold):.0f} ms (runs {runs}); "
        f"closed days cached {min(warm):.0f} ms  (target <= {DASHBOARD_TARGET_MS:.0f} ms)"
    )
    for fmt in args.formats:
        took, growth, size = measure_export(fmt)
        rate = args.turns / took
        print(
            f"export {fmt:>7}: {args.turns:,} turns in {took:.1f} s = {rate:,.0f} rows/s "
            f"(target >= {EXPORT_TARGET_ROWS_S:,.0f}), {size / 1e6:,.0f} MB, peak RSS growth "
            f"{growth:.0f} MB (target <= {RSS_TARGET_MB:.0f})"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
