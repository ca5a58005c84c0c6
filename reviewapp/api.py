"""API plumbing shared by every app: error shape and permissions."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, permissions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from reviewapp import roles


def body_too_large() -> str:
    """What a 413 says, wherever the API refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return f"The request body is larger than {limit:,} bytes; nothing was saved."


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Services raise Django's ValidationError; the API answers it as a 400 with field errors.
    A body over DATA_UPLOAD_MAX_MEMORY_SIZE gets a JSON 413 instead of Django's HTML page."""
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": body_too_large()}, status=413)
    if isinstance(exc, DjangoValidationError):
        detail = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        exc = exceptions.ValidationError(detail=detail)
    return drf_exception_handler(exc, context)


class IsAdminForWrites(permissions.BasePermission):
    """Anyone signed in may read what they can see; only admins may create, change or delete."""

    message = "Only admins may create, change or delete this."

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        return request.method in permissions.SAFE_METHODS or roles.is_admin(request.user)
