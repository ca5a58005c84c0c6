"""REST API for deployments, shaped like databricks.agents' list_deployments/get_deployments."""

from django.db import models, transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import selectors, services
from agents.models import Deployment, FeedbackSink, Health
from reviewapp.api import IsAdminForWrites
from reviewapp.jsonlimits import DepthLimitedJSONField

_WRITABLE_FIELDS = [
    "display_name",
    "model_name",
    "model_version",
    "endpoint_name",
    "served_entity_name",
    "query_endpoint",
    "endpoint_url",
    "endpoint_kind",
    "agent_schema",
    "streaming",
    "mlflow_tracking_uri",
    "openai_model",
    "feedback_sink",
    "feedback_endpoint",
    "feedback_json_strings",
    "auth_kind",
    "auth_env_var",
    "databricks_profile",
    "databricks_host",
    "oauth_client_id",
    "request_timeout_s",
    "default_custom_inputs",
    "custom_inputs_schema",
    "reviewer_instructions",
    "enabled",
    "allowed_users",
    "allowed_groups",
]
_SECRET_LOOKING_KEYS = {"token", "auth_token", "api_key", "password", "secret", "pat"}


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Health.choices)
    detail = serializers.CharField()
    checked_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "DeploymentHealth"


class FeedbackDestinationSerializer(serializers.Serializer):
    sink = serializers.ChoiceField(choices=FeedbackSink.choices)
    endpoint = serializers.CharField(help_text="The URL ratings are sent to; empty for `none`.")
    description = serializers.CharField(help_text="In words, as the pages say it.")

    class Meta:
        ref_name = "FeedbackDestination"


class DeploymentOutputSerializer(serializers.ModelSerializer):
    review_app_url = serializers.CharField(read_only=True)
    health = serializers.SerializerMethodField()
    feedback_destination = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            *_WRITABLE_FIELDS,
            "detected_schema",
            "review_app_url",
            "health",
            "feedback_destination",
            "created_at",
            "updated_at",
        ]
        ref_name = "Deployment"

    @extend_schema_field(HealthSerializer)
    def get_health(self, deployment: Deployment) -> dict:
        return {
            "status": deployment.health_status,
            "detail": deployment.health_detail,
            "checked_at": deployment.health_checked_at,
        }

    @extend_schema_field(FeedbackDestinationSerializer)
    def get_feedback_destination(self, deployment: Deployment) -> dict:
        """Where ratings really go, with `feedback_sink: auto` resolved from the endpoint kind."""
        return {
            "sink": deployment.effective_feedback_sink,
            "endpoint": deployment.effective_feedback_endpoint,
            "description": deployment.feedback_destination,
        }


class DeploymentInputSerializer(serializers.ModelSerializer):
    # JSON fields sent in a form arrive as text: too deep is a 400 (a JSON body is checked whole).
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.JSONField: DepthLimitedJSONField,
    }

    class Meta:
        model = Deployment
        fields = _WRITABLE_FIELDS
        ref_name = "DeploymentRequest"

    def to_internal_value(self, data: object) -> dict:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            secrets = [key for key in unknown if key.lower() in _SECRET_LOOKING_KEYS]
            if secrets:
                raise serializers.ValidationError(
                    {
                        key: [
                            "Tokens are never stored: put it in an environment variable on the "
                            "server and give that variable's name in auth_env_var."
                        ]
                        for key in secrets
                    }
                )
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


class DeploymentListApi(APIView):
    permission_classes = [IsAdminForWrites]
    pagination_class = PageNumberPagination  # also tells the OpenAPI schema the page's shape

    @extend_schema(
        parameters=[
            OpenApiParameter("model_name", str, description="catalog.schema.model"),
            OpenApiParameter("model_version", str),
        ],
        responses=DeploymentOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        """Deployments the caller may use (all of them for admins), optionally filtered."""
        deployments = selectors.deployment_list(
            request.user,
            model_name=request.query_params.get("model_name", ""),
            model_version=request.query_params.get("model_version", ""),
        ).prefetch_related("allowed_users", "allowed_groups")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(deployments, request, view=self)
        data = DeploymentOutputSerializer(page, many=True).data
        return paginator.get_paginated_response(data)

    @extend_schema(request=DeploymentInputSerializer, responses={201: DeploymentOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = DeploymentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deployment = services.deployment_create(**serializer.validated_data)
        return Response(DeploymentOutputSerializer(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentDetailApi(APIView):
    permission_classes = [IsAdminForWrites]

    @extend_schema(responses=DeploymentOutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        deployment = selectors.deployment_get_for_user(request.user, pk)
        return Response(DeploymentOutputSerializer(deployment).data)

    @extend_schema(request=DeploymentInputSerializer, responses=DeploymentOutputSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        return self._update(request, pk, partial=True)

    @extend_schema(request=DeploymentInputSerializer, responses=DeploymentOutputSerializer)
    def put(self, request: Request, pk: int) -> Response:
        return self._update(request, pk, partial=False)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        deployment = selectors.deployment_get_for_user(request.user, pk)
        services.deployment_delete(deployment=deployment)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _update(self, request: Request, pk: int, *, partial: bool) -> Response:
        with transaction.atomic():
            deployment = selectors.deployment_get_for_user(request.user, pk)
            serializer = DeploymentInputSerializer(deployment, data=request.data, partial=partial)
            serializer.is_valid(raise_exception=True)
            deployment = services.deployment_update(
                deployment=deployment, **serializer.validated_data
            )
        return Response(DeploymentOutputSerializer(deployment).data)
