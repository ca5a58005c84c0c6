"""Databricks-style error replies: `{"error_code": ..., "message": ...}` with an HTTP status.

Clients of real serving endpoints key on `error_code`, so the demo agent uses the codes the
Databricks REST API uses for the same situations.
"""

from starlette.responses import JSONResponse

ERROR_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    405: "METHOD_NOT_ALLOWED",
    409: "RESOURCE_CONFLICT",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_code_for(status: int) -> str:
    if status in ERROR_CODES:
        return ERROR_CODES[status]
    return "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"


class ApiError(Exception):
    """Raised anywhere in a handler; the app turns it into a Databricks-style error reply."""

    def __init__(
        self,
        status: int,
        message: str,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code or error_code_for(status)
        self.headers = headers


def error_response(
    status: int,
    message: str,
    error_code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error_code": error_code or error_code_for(status), "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


def api_error_response(exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.error_code, exc.headers)
