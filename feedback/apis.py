"""REST API for ratings: rate a turn, read a rating with its delivery, list them in the
Databricks assessment-log schema (one row per text or retrieval assessment)."""

from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback import selectors, services
from feedback.models import DeliveryStatus, Rating
from feedback.serializers import (
    AssessmentLogRowSerializer,
    RatingSerializer,
    RetrievalAssessmentsField,
    TextAssessmentsField,
)
from reviewapp import roles


def _delivery_dict(rating: Rating, *, with_attempts: bool = False) -> dict | None:
    delivery = selectors.delivery_of(rating)
    if delivery is None:
        return None
    out = {
        "status": delivery.status,
        "sink": delivery.sink,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "last_error": delivery.last_error,
        "sent_at": delivery.sent_at,
    }
    if with_attempts:
        out["attempt_log"] = [
            {
                "started_at": a.started_at,
                "status_code": a.status_code,
                "duration_ms": a.duration_ms,
                "error": a.error,
                "batch_size": a.batch_size,
            }
            for a in delivery.attempt_rows.all()
        ]
    return out


class RatingOutputSerializer(RatingSerializer):
    """Built in one step; tests/test_openapi.py checks it against RatingSerializer's schema."""

    def to_representation(self, rating: Rating) -> dict:
        return {
            "id": rating.pk,
            "request_id": rating.request.databricks_request_id,
            "deployment": rating.deployment_id,
            "source": {"id": rating.source_id, "type": rating.source_type},
            "text_assessments": [rating.text_assessment] if rating.text_assessment else [],
            "retrieval_assessments": rating.retrieval_assessments,
            "is_current": rating.is_current,
            "created_at": rating.created_at,
            "delivery": _delivery_dict(rating, with_attempts=self.context.get("attempts", False)),
            "destination": rating.deployment.feedback_destination,
        }


def assessment_log_rows(rating: Rating) -> list[dict]:
    """The rating as assessment-log rows (protocol.md §4.3), plus our rating id and delivery
    status so a row can be traced back."""
    delivery = selectors.delivery_of(rating)
    common = {
        "request_id": rating.request.databricks_request_id,
        "source": {"type": rating.source_type, "id": rating.source_id, "tags": {}},
        "timestamp": rating.created_at,
        "assessment_id": rating.pk,
        "is_current": rating.is_current,
        "delivery_status": delivery.status if delivery else None,
    }
    rows = []
    if rating.text_assessment:
        text = {"step_id": None, "ratings": {}, "free_text_comment": None, "suggested_output": None}
        text.update(rating.text_assessment)
        rows.append(
            {**common, "step_id": None, "text_assessment": text, "retrieval_assessment": None}
        )
    for doc in rating.retrieval_assessments:
        retrieval = {"ratings": {}, "free_text_comment": None, **doc}
        rows.append(
            {
                **common,
                "step_id": doc.get("step_id"),  # a whole retrieval's rating may name none
                "text_assessment": None,
                "retrieval_assessment": retrieval,
            }
        )
    return rows


class RequestAssessmentCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AssessmentRequest"

        text_assessments = TextAssessmentsField(required=False)
        retrieval_assessments = RetrievalAssessmentsField(required=False)

        def to_internal_value(self, data):
            if isinstance(data, dict):
                unknown = sorted(set(data) - set(self.fields))
                if "source" in unknown:
                    raise serializers.ValidationError(
                        {"source": ["The source is the signed-in user; do not send it."]}
                    )
                if unknown:
                    raise serializers.ValidationError({k: ["Unknown field."] for k in unknown})
            return super().to_internal_value(data)

    @extend_schema(request=InputSerializer, responses={201: RatingOutputSerializer})
    def post(self, request: Request, request_id: str) -> Response:
        """Rate a turn; it becomes your current rating of it and is forwarded to its sink."""
        turn = services.turn_to_rate(request.user, request_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rating = services.rating_create(
            turn=turn,
            reviewer=request.user,
            text_assessments=serializer.validated_data.get("text_assessments"),
            retrieval_assessments=serializer.validated_data.get("retrieval_assessments"),
        )
        return Response(RatingOutputSerializer(rating).data, status=status.HTTP_201_CREATED)


class AssessmentDetailApi(APIView):
    @extend_schema(responses=RatingOutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        rating = selectors.rating_get_for_user(request.user, pk)
        return Response(RatingOutputSerializer(rating, context={"attempts": True}).data)


class AssessmentListApi(APIView):
    pagination_class = PageNumberPagination  # also tells the OpenAPI schema the page's shape

    class FilterSerializer(serializers.Serializer):
        deployment = serializers.IntegerField(required=False)
        status = serializers.ChoiceField(choices=DeliveryStatus.values, required=False)

    @extend_schema(
        parameters=[
            OpenApiParameter("deployment", int),
            OpenApiParameter("status", str, enum=DeliveryStatus.values),
        ],
        responses=AssessmentLogRowSerializer(many=True),
        operation_id="assessments_list",
    )
    def get(self, request: Request) -> Response:
        """Ratings you may see, newest first, as assessment-log rows; a page holds 100 ratings
        (each one row for its text assessment and one per rated document)."""
        if not roles.can_review(request.user):
            raise PermissionDenied("Only reviewers and admins may read ratings.")
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        ratings = selectors.rating_list(
            request.user,
            deployment_id=filters.validated_data.get("deployment"),
            status=filters.validated_data.get("status", ""),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(ratings, request, view=self)
        rows = [row for rating in page for row in assessment_log_rows(rating)]
        return paginator.get_paginated_response(rows)
