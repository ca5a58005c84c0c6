"""Datasets over the REST API: list them, upload a new version (reviewers and admins), read a
version's rows a page at a time."""

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from evaluation import datasets, session_datasets
from evaluation.models import Dataset, DatasetVersion
from review.models import ReviewSession
from reviewapp import roles

UPLOAD = {
    "type": "object",
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "skip_bad_rows": {"type": "boolean"},
    },
}


def _require_reviewer(request: Request) -> None:
    if not roles.can_review(request.user):
        raise PermissionDenied("Only reviewers and admins may read datasets.")


def version_dict(version: DatasetVersion) -> dict:
    return {
        "name": version.dataset.name,
        "version": version.number,
        "rows": version.row_count,
        "columns": version.columns,
        "file_name": version.file_name,
        "created_at": version.created_at,
    }


class DatasetListApi(APIView):
    @extend_schema(responses={200: OpenApiResponse(description="[{name, versions: [...]}]")})
    def get(self, request: Request) -> Response:
        _require_reviewer(request)
        out = []
        for dataset in Dataset.objects.prefetch_related("versions"):
            versions = [version_dict(v) for v in dataset.versions.all()]
            out.append({"name": dataset.name, "versions": versions})
        return Response(out)


class DatasetVersionCreateApi(APIView):
    """Reviewers and admins: upload a JSON lines or CSV file (multipart `file`) as the
    dataset's next version; rows that cannot be used make it a 400 with each line and why, unless
    `skip_bad_rows` (then they are listed in `skipped`)."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": UPLOAD},
        responses={
            201: OpenApiResponse(description="{name, version, rows, columns, skipped}"),
            400: OpenApiResponse(description="{detail, problems: [{line, error}]}"),
        },
    )
    def post(self, request: Request, name: str) -> Response:
        if not roles.can_review(request.user):
            raise PermissionDenied("Only reviewers and admins may upload datasets.")
        upload = request.FILES.get("file")
        if upload is None:
            return Response({"detail": "Send the file as the multipart field `file`."}, 400)
        skip = str(request.data.get("skip_bad_rows", "")).lower() in ("1", "true", "on", "yes")
        try:
            made = datasets.dataset_upload(
                name=name, file=upload, file_name=upload.name, user=request.user,
                skip_bad_rows=skip,
            )  # fmt: skip
        except datasets.DatasetRejected as exc:
            problems = [{"line": line, "error": why} for line, why in exc.problems]
            return Response({"detail": exc.messages[0], "problems": problems}, 400)
        body = version_dict(made.version)
        body["skipped"] = [{"line": line, "error": why} for line, why in made.skipped]
        return Response(body, status=status.HTTP_201_CREATED)


class DatasetVersionApi(APIView):
    pagination_class = PageNumberPagination

    @extend_schema(
        responses={200: OpenApiResponse(description="{count, next, previous, results, dataset}")}
    )
    def get(self, request: Request, name: str, number: int) -> Response:
        """The version and its rows (100 a page, `?page=`)."""
        _require_reviewer(request)
        version = datasets.dataset_version(name, number)
        paginator = self.pagination_class()
        rows = paginator.paginate_queryset(version.rows.order_by("position"), request, view=self)
        response = paginator.get_paginated_response([row.data for row in rows])
        response.data["dataset"] = version_dict(version)
        return response


class SessionDatasetVersionApi(APIView):
    """Admins: a review session's expectations as the dataset's next version."""

    @extend_schema(
        request={"application/json": {"type": "object", "properties": {
            "session": {"type": "integer"}}}},
        responses={201: OpenApiResponse(description="{name, version, rows, columns}")},
    )  # fmt: skip
    def post(self, request: Request, name: str) -> Response:
        session_id = request.data.get("session") if isinstance(request.data, dict) else None
        if not isinstance(session_id, int):
            return Response({"detail": 'Send {"session": <review session id>}.'}, 400)
        session = get_object_or_404(ReviewSession, pk=session_id)
        made = session_datasets.session_dataset_version(
            session=session, user=request.user, name=name
        )
        return Response(version_dict(made.version), status=status.HTTP_201_CREATED)
