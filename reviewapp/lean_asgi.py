"""What the API's lean paths share (agents/lean_chat_api.py, feedback/lean_rating_api.py):
requests served straight from the ASGI application, in front of Django's handler.

A lean path serves a token-authenticated JSON POST and nothing else: sessions and CSRF are left
out because a token carries no cookie authority; Django's middleware headers are left out
except nosniff, set here.
"""

import json
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[dict, Receive, Send], Awaitable[None]]
TOKEN_KEYWORD = b"token "


def json_token(scope: dict) -> str:
    """The API token of a POST with a JSON body, or "" (not one a lean path serves)."""
    if scope["method"] != "POST":
        return ""
    token, json_body = "", False
    for name, value in scope["headers"]:
        if name == b"authorization" and value[:6].lower() == TOKEN_KEYWORD:
            token = value[6:].strip().decode("latin-1")
        elif name == b"content-type":
            json_body = value.split(b";")[0].strip().lower() == b"application/json"
    return token if json_body else ""


class HungUp(Exception):
    """The client hung up before its body was read: there is nothing to answer."""


async def read_body(receive: Receive) -> bytes | None:
    """The whole body, or None past DATA_UPLOAD_MAX_MEMORY_SIZE (the API's limit elsewhere)."""
    limit, parts, size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE, [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HungUp
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def replayed(body: bytes, receive: Receive) -> Receive:
    """`receive` for Django's handler after a lean path read the body: the body first, then
    the client's own messages (its hanging up)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def response_headers(content_type: bytes, extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", content_type), (b"x-content-type-options", b"nosniff")]
    headers += [(name.lower().encode(), value.encode()) for name, value in extra.items()]
    return headers


async def send_json(
    send: Send, status: int, body: object, headers: dict[str, str] | None = None
) -> None:
    """`body` as JSON (Django's encoder)."""
    await send_bytes(send, status, json.dumps(body, cls=DjangoJSONEncoder).encode(), headers)


async def send_bytes(
    send: Send, status: int, payload: bytes, headers: dict[str, str] | None = None
) -> None:
    """A JSON answer already rendered."""
    all_headers = response_headers(b"application/json", headers or {})
    all_headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": payload})
