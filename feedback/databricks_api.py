"""The Databricks feedback endpoint, served by the app: client code written for
`POST /serving-endpoints/<endpoint>/served-models/feedback/invocations` works against the app by
changing its host. Thin: authenticate, hand the body to feedback.inbound, answer as the
feedback model did ({"predictions": {"result": "ok"}})."""

import base64
import binascii

from django.core.exceptions import PermissionDenied, ValidationError
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.authentication import get_authorization_header
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback import inbound
from feedback.serializers import RetrievalAssessmentSerializer, TextAssessmentSerializer
from reviewapp.authentication import CachedTokenAuthentication


class DatabricksTokenAuthentication(CachedTokenAuthentication):
    """The app's API token sent as Databricks clients send theirs: `Authorization: Bearer
    <token>` (databricks-sdk, the OpenAI client) or HTTP basic with user `token` (the docs'
    `curl -u token:$DATABRICKS_TOKEN`)."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if len(parts) != 2:
            return None
        scheme, value = parts[0].lower(), parts[1]
        if scheme == b"bearer":
            return self.authenticate_credentials(value.decode("latin-1"))
        if scheme == b"basic":
            try:
                user, _, token = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise exceptions.AuthenticationFailed("Malformed basic credentials.") from None
            if user == "token" and token:
                return self.authenticate_credentials(token)
        return None

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="feedback"'


class DatabricksTokenScheme(OpenApiAuthenticationExtension):
    """How the schema names it: HTTP bearer (basic `token:<key>` works too)."""

    target_class = DatabricksTokenAuthentication
    name = "databricksBearer"

    def get_security_definition(self, auto_schema) -> dict:
        return {"type": "http", "scheme": "bearer", "description": "The app's API token."}


def _record(**kwargs) -> serializers.Serializer:
    return inline_serializer(
        "FeedbackRecord",
        {
            "request_id": serializers.CharField(help_text="The rated answer's request id."),
            "source": serializers.JSONField(
                required=False, help_text="{id, type: human}, or that object as a JSON string."
            ),
            "text_assessments": TextAssessmentSerializer(
                many=True, required=False, help_text="Or this list as a JSON string."
            ),
            "retrieval_assessments": RetrievalAssessmentSerializer(
                many=True, required=False, help_text="Or this list as a JSON string."
            ),
        },
        **kwargs,
    )


_RESULT = inline_serializer("FeedbackResult", {"result": serializers.CharField()})


# Databricks' error codes for the statuses this endpoint answers.
_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "BAD_REQUEST",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
}


class DatabricksFeedbackApi(APIView):
    authentication_classes = [DatabricksTokenAuthentication, CachedTokenAuthentication]

    def handle_exception(self, exc: Exception) -> Response:
        """Every error in Databricks' shape {error_code, message}, as its clients read it, also
        those DRF raises before the view runs (a body that is not JSON or too deep, no token)."""
        response = super().handle_exception(exc)
        detail = response.data.get("detail") if isinstance(response.data, dict) else None
        if detail is not None:
            response.data = {
                "error_code": _ERROR_CODES.get(response.status_code, "INTERNAL_ERROR"),
                "message": str(detail),
                "errors": [str(detail)],
            }
        return response

    @extend_schema(
        operation_id="databricks_feedback_invocations",
        request=inline_serializer("FeedbackInvocation", {"dataframe_records": _record(many=True)}),
        responses={
            200: inline_serializer("FeedbackInvocationResult", {"predictions": _RESULT}),
            400: inline_serializer(
                "FeedbackInvocationError",
                {
                    "error_code": serializers.CharField(),
                    "message": serializers.CharField(),
                    "errors": serializers.ListField(child=serializers.CharField()),
                },
            ),
        },
        description="Databricks feedback-model compatible: each record becomes the caller's "
        "rating of that answer, forwarded like any other. All records or none are saved.",
    )
    def post(self, request: Request, endpoint_name: str) -> Response:
        try:
            inbound.feedback_records_save(
                caller=request.user, endpoint_name=endpoint_name, body=request.data
            )
        except PermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        except ValidationError as exc:
            # Databricks' error shape, with every problem listed (each names its record).
            return Response(
                {
                    "error_code": "BAD_REQUEST",
                    "message": " ".join(exc.messages),
                    "errors": exc.messages,
                },
                status=400,
            )
        return Response({"predictions": {"result": "ok"}})
