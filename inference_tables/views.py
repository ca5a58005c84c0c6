"""Downloads of the request log and the assessment log, from the pages and the API. Thin:
check the format and the filters (the same forms as the pages that list the rows), call
inference_tables.exports, stream what it makes."""

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.views import APIView

from agents import selectors as agent_selectors
from agents.models import Deployment
from inference_tables import exports, formats, readers
from inference_tables.imports import import_request_log
from review import assessment_selectors
from review import selectors as review_selectors
from review.assessment_views import assessment_filter_form
from review.filters import RequestFilterForm
from reviewapp import roles

UNKNOWN_FORMAT = "Unknown format {!r}: use jsonl, csv or parquet."


def export_rows(request: HttpRequest, user, kind: str, format_name: str):
    """The export the query string asks for, or a 4xx JsonResponse saying why not."""
    if format_name not in formats.FORMATS:
        return JsonResponse({"detail": UNKNOWN_FORMAT.format(format_name)}, status=400)
    deployments = list(agent_selectors.deployments_visible_to(user))
    if kind == "requests":
        form = RequestFilterForm(
            request.GET, deployments=deployments, can_review=roles.can_review(user)
        )
        if not form.is_valid():
            return JsonResponse({"detail": "Bad filters.", "errors": form.errors}, status=400)
        rows = review_selectors.matching_turns(user, form.to_filters())
    else:
        form = assessment_filter_form(request, user)  # PermissionDenied unless a reviewer
        if not form.is_valid():
            return JsonResponse({"detail": "Bad filters.", "errors": form.errors}, status=400)
        rows = assessment_selectors.matching_ratings(user, form.to_filters())
    return _streamed(request, exports.export(kind, format_name, rows))


def _streamed(request: HttpRequest, made: exports.Export) -> StreamingHttpResponse:
    chunks = made.chunks
    if isinstance(request, ASGIRequest):  # an async iterator, or Django would read it all first
        chunks = _one_at_a_time(chunks)
    response = StreamingHttpResponse(chunks, content_type=made.format.content_type)
    response["Content-Disposition"] = f'attachment; filename="{made.filename}"'
    return response


async def _one_at_a_time(chunks):
    """Each chunk made in Django's thread for synchronous code (its queries), then sent."""
    step = sync_to_async(next, thread_sensitive=True)
    while (chunk := await step(chunks, None)) is not None:
        yield chunk


@require_GET
@login_required
def request_export(request: HttpRequest, format_name: str):
    """The requests page's rows (its filters, from the query string) as a file."""
    return export_rows(request, request.user, "requests", format_name)


@require_GET
@login_required
def assessment_export(request: HttpRequest, format_name: str):
    return export_rows(request, request.user, "assessments", format_name)


class ExportApi(APIView):
    kind = "requests"

    @extend_schema(
        parameters=[OpenApiParameter("format_name", str, OpenApiParameter.PATH,
                                     enum=list(formats.FORMATS))],
        responses={200: OpenApiResponse(description="The file, streamed."), 400: None},
    )  # fmt: skip
    def get(self, request: Request, format_name: str):
        return export_rows(request._request, request.user, self.kind, format_name)


class RequestExportApi(ExportApi):
    """The request log in the Databricks inference-table schema; the requests page's filters
    (`deployment`, `since`, `until`, `status`, `q`, …) as query parameters."""

    kind = "requests"


class AssessmentExportApi(ExportApi):
    """Every rating version as assessment-log rows; the assessments page's filters
    (`deployment`, `question`, `value`, `reviewer`, `session`, `status` of its delivery,
    `since`, `until`, `current`). Reviewers and admins."""

    kind = "assessments"


UPLOAD = {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
IMPORT_REPORT = OpenApiResponse(
    description="{added, already_logged, rejected, problems: [{at, error}], at_means}"
)


class RequestLogImportApi(APIView):
    """Admins: a Databricks request log (JSON lines or Parquet, multipart field `file`) into
    this deployment's request log; idempotent on `databricks_request_id`."""

    parser_classes = [MultiPartParser]

    @extend_schema(request={"multipart/form-data": UPLOAD}, responses={200: IMPORT_REPORT})
    def post(self, request: Request, pk: int):
        if not roles.is_admin(request.user):
            raise PermissionDenied("Only admins may import request logs.")
        deployment = get_object_or_404(Deployment, pk=pk)
        upload = request.FILES.get("file")
        if upload is None:
            return JsonResponse(
                {"detail": "Send the file as the multipart field `file`."}, status=400
            )
        format_name, rows = readers.rows_of(upload, upload.name)
        report = import_request_log(deployment, rows, owner=request.user)
        return JsonResponse(
            {
                "added": report.added,
                "already_logged": report.already_logged,
                "rejected": report.rejected,
                "problems": [{"at": at, "error": why} for at, why in report.problems],
                "at_means": "row" if format_name == "parquet" else "line",
            }
        )
