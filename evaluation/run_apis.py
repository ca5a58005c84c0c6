"""Runs over the REST API (what the `reviewapp` CLI drives): create one from a run file (sent
as JSON), list them, read one's progress and metrics, its rows, compare two, cancel, resume.
A run file that cannot be run is a 400 whose errors are keyed by the file's field."""

import math
import re

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from evaluation import run_selectors, runs
from evaluation.models import Run

RUN = OpenApiResponse(description="{name, kind, status, rows: {...}, metrics: [...]}")


def run_dict(run: Run, *, with_metrics: bool = True) -> dict:
    out = {
        "name": run.name,
        "kind": run.kind,
        "status": run.status,
        "deployment": run.deployment_id,
        "data": str(run.dataset_version),
        "base_run": run.base_run.name if run.base_run_id else None,
        "evaluators": [spec["name"] for spec in run.evaluators],
        "concurrency": run.concurrency,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
    }
    if with_metrics:
        out["rows"] = run_selectors.run_counts(run)
        out["metrics"] = [metric.as_dict() for metric in run_selectors.run_metrics(run)]
    return out


class RunListApi(APIView):
    @extend_schema(
        operation_id="api_v1_runs_list",
        responses={200: OpenApiResponse(description="[{name, kind, status, ...}]")},
    )
    def get(self, request: Request) -> Response:
        out = []
        for run in run_selectors.run_list(request.user):
            item = run_dict(run, with_metrics=False)
            item["rows"] = {"total": run.row_count, "done": run.done_count}
            out.append(item)
        return Response(out)

    @extend_schema(
        request={"application/json": {"type": "object"}},
        responses={201: RUN, 400: OpenApiResponse(description="{field: [why]}")},
    )
    def post(self, request: Request) -> Response:
        run = runs.run_create(user=request.user, spec=request.data)
        return Response(run_dict(run), status=status.HTTP_201_CREATED)


class RunApi(APIView):
    @extend_schema(responses={200: RUN})
    def get(self, request: Request, name: str) -> Response:
        return Response(run_dict(run_selectors.run_get(request.user, name)))


class RunRowsApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("after", int, description="the last position already read"),
            OpenApiParameter("limit", int, description=f"at most {run_selectors.ROWS_PAGE}"),
        ],
        responses={200: OpenApiResponse(description="{rows: [...], next_after}")},
    )
    def get(self, request: Request, name: str) -> Response:
        run = run_selectors.run_get(request.user, name)
        after = _whole(request.query_params.get("after"), 0)
        limit = min(_whole(request.query_params.get("limit"), run_selectors.ROWS_PAGE),
                    run_selectors.ROWS_PAGE)  # fmt: skip
        rows = run_selectors.run_rows(run, after=after, limit=max(limit, 1))
        next_after = rows[-1].position if len(rows) == max(limit, 1) else None
        return Response({"rows": [run_selectors.row_dict(r) for r in rows],
                         "next_after": next_after})  # fmt: skip


def _whole(text: str | None, default: int) -> int:
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise ValidationError("after and limit are whole numbers.")
    return int(text)


class RunCompareApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("tolerance", float, description="allowed worsening share")],
        responses={200: OpenApiResponse(description="{metrics: [...], changed_rows: [...]}")},
    )
    def get(self, request: Request, name: str, other: str) -> Response:
        base, compared = (
            run_selectors.run_get(request.user, name),
            run_selectors.run_get(request.user, other),
        )
        try:
            tolerance = float(request.query_params.get("tolerance", 0))
        except ValueError:
            tolerance = -1.0
        if not (math.isfinite(tolerance) and tolerance >= 0):
            return Response({"detail": "tolerance is a number from 0 (0.05: 5 % worse)."}, 400)
        return Response(run_selectors.run_compare(base, compared, tolerance=tolerance))


class RunCancelApi(APIView):
    @extend_schema(request=None, responses={200: RUN})
    def post(self, request: Request, name: str) -> Response:
        run = run_selectors.run_get(request.user, name)
        runs.run_cancel(run)
        return Response(run_dict(run))


class RunResumeApi(APIView):
    @extend_schema(request=None, responses={200: RUN})
    def post(self, request: Request, name: str) -> Response:
        run = run_selectors.run_get(request.user, name)
        resumed = runs.run_resume(run)
        return Response({**run_dict(run), "resumed_rows": resumed})
