"""Reads of runs for the API, the CLI (through it) and the pages: the list, a run's progress
and metrics, its rows a page at a time, and two runs compared row by row."""

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet
from django.http import Http404

from agents import selectors as agent_selectors
from evaluation import evaluators
from evaluation.models import RowStatus, Run, RunKind, RunRow
from evaluation.runs import require_runner

ROWS_PAGE = 100


def runs_visible_to(user: AbstractBaseUser) -> QuerySet[Run]:
    """Runs of the deployments the user may see (an evaluation run: its base run's)."""
    require_runner(user)
    ids = agent_selectors.deployments_visible_to(user, include_disabled=True).values("pk")
    return Run.objects.filter(
        Q(kind=RunKind.BATCH, deployment__in=ids)
        | Q(kind=RunKind.EVALUATION, base_run__deployment__in=ids)
    ).select_related("dataset_version__dataset", "base_run", "deployment")


def run_get(user: AbstractBaseUser, name: str) -> Run:
    """The run, if the user may see it (runs_visible_to); Http404 otherwise."""
    run = runs_visible_to(user).filter(name=name).first()
    if run is None:
        raise Http404(f"No run named {name!r}.")
    return run


def run_list(user: AbstractBaseUser, *, limit: int = 200) -> list[Run]:
    return list(
        runs_visible_to(user)
        .annotate(done_count=Count("rows", filter=Q(rows__status=RowStatus.DONE)))
        .order_by("-created_at", "-pk")[:limit]
    )


def run_counts(run: Run) -> dict[str, int]:
    """Rows by state, and the errors among those done."""
    by_status = dict(
        run.rows.values_list("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    if run.kind == RunKind.BATCH:
        errors = run.rows.filter(status=RowStatus.DONE).exclude(error="").count()
    else:
        errors = (
            sum(
                1
                for scores in run.rows.filter(status=RowStatus.DONE).values_list(
                    "scores", flat=True
                )
                if any("error" in result for result in scores.values())
            )
            + run.rows.filter(status=RowStatus.DONE, scores={}).exclude(error="").count()
        )
    return {
        "total": run.row_count,
        "done": by_status.get(RowStatus.DONE, 0),
        "in_flight": by_status.get(RowStatus.CLAIMED, 0),
        "pending": by_status.get(RowStatus.PENDING, 0),
        "errors": errors,
    }


@dataclass
class Metric:
    name: str
    value: float | None
    count: int  # rows it was computed over
    errors: int = 0
    skipped: int = 0
    higher_is_better: bool = True

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def run_metrics(run: Run) -> list[Metric]:
    """A batch run: its error rate and latency percentiles. An evaluation run: each
    evaluator's mean over the rows it scored (booleans as 0/1), with its errors and skips."""
    done = run.rows.filter(status=RowStatus.DONE)
    if run.kind == RunKind.BATCH:
        rows = list(done.values_list("error", "turn__execution_time_ms"))
        latencies = [ms for error, ms in rows if not error and ms is not None]
        failed = sum(1 for error, _ in rows if error)
        out = [Metric("error_rate", failed / len(rows) if rows else None, len(rows),
                      higher_is_better=False)]  # fmt: skip
        for name, q in (("latency_p50_ms", 50), ("latency_p95_ms", 95)):
            value = float(np.percentile(latencies, q)) if latencies else None
            out.append(Metric(name, value, len(latencies), higher_is_better=False))
        return out
    all_scores = list(done.values_list("scores", flat=True))
    out = []
    for spec in run.evaluators:
        values, errors, skipped = [], 0, 0
        for scores in all_scores:
            result = scores.get(spec["name"], {})
            if "value" in result and isinstance(result["value"], int | float):
                values.append(float(result["value"]))
            elif "error" in result:
                errors += 1
            else:
                skipped += 1
        mean = round(sum(values) / len(values), 6) if values else None
        better = evaluators.higher_is_better(spec)
        out.append(Metric(spec["name"], mean, len(values), errors, skipped, better))
    return out


def run_rows(run: Run, *, after: int = 0, limit: int = ROWS_PAGE) -> list[RunRow]:
    """A page of rows from position `after` + 1, with their answers (not their traces)."""
    return list(
        run.rows.filter(position__gt=after)
        .select_related("dataset_row", "turn")
        .defer("turn__trace", "turn__trace_outline", "turn__request_raw", "turn__response_raw")
        .order_by("position")[:limit]
    )


def row_dict(row: RunRow) -> dict[str, Any]:
    turn = row.turn
    return {
        "position": row.position,
        "status": row.status,
        "inputs": row.dataset_row.data,
        "answer": turn.response if turn is not None else None,
        "request_id": turn.databricks_request_id if turn is not None else None,
        "latency_ms": turn.execution_time_ms if turn is not None else None,
        "error": row.error,
        "scores": row.scores,
    }


def _delta(base: Metric, other: Metric | None, tolerance: float) -> dict[str, Any]:
    value = other.value if other is not None else None
    if base.value is None or value is None:
        # Nothing measured now where the base measured something (every row an error, the
        # metric gone) is a regression; nothing measured in the base is not.
        return {"name": base.name, "base": base.value, "value": value, "delta": None,
                "higher_is_better": base.higher_is_better,
                "regressed": base.value is not None}  # fmt: skip
    delta = other.value - base.value
    worse = -delta if base.higher_is_better else delta
    return {
        "name": base.name,
        "base": base.value,
        "value": other.value,
        "delta": round(delta, 6),
        "higher_is_better": base.higher_is_better,
        "regressed": worse > tolerance * abs(base.value) + 1e-12,
    }


def run_compare(base: Run, other: Run, *, tolerance: float = 0.0) -> dict[str, Any]:
    """`other` against `base`: each metric both have, its delta and whether it got worse by
    more than `tolerance` (a share of the base's value), and the rows whose answers or scores
    differ, by position."""
    mine = {metric.name: metric for metric in run_metrics(other)}
    metrics = [_delta(metric, mine.get(metric.name), tolerance) for metric in run_metrics(base)]
    a_rows = {row.position: row for row in run_rows(base, limit=base.row_count or 1)}
    b_rows = {row.position: row for row in run_rows(other, limit=other.row_count or 1)}
    changed = []
    for position in sorted(set(a_rows) | set(b_rows)):
        a, b = a_rows.get(position), b_rows.get(position)
        a_dict = row_dict(a) if a else None
        b_dict = row_dict(b) if b else None
        if (a_dict and a_dict["answer"], a_dict and _values(a_dict)) != (
            b_dict and b_dict["answer"],
            b_dict and _values(b_dict),
        ):
            changed.append({"position": position, "base": a_dict, "other": b_dict})
    return {"base": base.name, "other": other.name, "metrics": metrics, "changed_rows": changed}


def _values(row: dict) -> dict:
    return {name: result.get("value") for name, result in row["scores"].items()}
