"""Token check as Databricks does it: `Authorization: Bearer <token>` or basic `token:<token>`.

A plain ASGI middleware (not BaseHTTPMiddleware) so it adds no task or buffering per request;
the demo agent must hold a thousand requests in flight cheaply.
"""

import base64
import binascii
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from demo_agent.errors import error_response

OPEN_PATHS = frozenset({"/health"})  # liveness probes carry no credentials


def presented_token(authorization: str) -> str | None:
    """The token in an Authorization header value, or None if it carries none we accept."""
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        return password if user == "token" else None
    return None


class TokenAuthMiddleware:
    def __init__(self, app: ASGIApp, token: str | None):
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.token or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), ""
        )
        given = presented_token(header)
        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            await self.app(scope, receive, send)
            return
        message = (
            "Invalid access token."
            if header
            else "Credential was not sent or was of an unsupported type for this API."
        )
        response = error_response(401, message, "UNAUTHENTICATED", {"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
