"""The chat API's lean path: a token-authenticated `POST /api/v1/deployments/<id>/chat/` with a
JSON body is served straight from the ASGI application (reviewapp/asgi.py), in front of
Django's handler.

Why: through Django's handler a turn paid for a thread per request (its synchronous
middleware runs in one, held while the agent thinks: ~1,000 threads for 1,000 turns in flight),
thread hops for each middleware and signal, and DRF's dispatch; bench/README.md has the
figures. Here a turn is the turn service and nothing else: the body is checked by the same
serializer and answered by the same `chat_answer` as Django's `chat_api`, so both answer alike
(tests/chat/test_lean_chat_api.py runs the API's cases through both).

What a lean path leaves out is said in reviewapp/lean_asgi.py. Anything else (no token,
another method or content type) goes to Django unchanged.
"""

import asyncio
import logging
import re
from contextlib import suppress
from urllib.parse import parse_qs

from agents.chat_apis import ChatAnswer, chat_answer
from agents.turns import db
from reviewapp import jsonlimits
from reviewapp.api import body_too_large
from reviewapp.lean_asgi import HungUp, Receive, Send, json_token, read_body, response_headers
from reviewapp.lean_asgi import send_json as send_json_body

logger = logging.getLogger(__name__)
CHAT_PATH = re.compile(r"/api/v1/deployments/(\d+)/chat/")


def lean_target(scope: dict) -> tuple[int, str] | None:
    """(deployment id, token) when this request is one the lean path serves."""
    found = CHAT_PATH.fullmatch(scope["path"])
    if found is None:
        return None
    token = json_token(scope)
    return (int(found.group(1)), token) if token else None


async def serve(scope: dict, receive: Receive, send: Send, deployment_id: int, token: str) -> None:
    db.pooled_threads.set(db.shared_executor())  # this request's context only
    try:
        body = await read_body(receive)
    except HungUp:
        return
    respond = asyncio.create_task(_respond(scope, send, deployment_id, token, body))
    hang_up = asyncio.create_task(_hang_up(receive, respond))
    try:
        await respond
    except asyncio.CancelledError:
        if not hang_up.done():
            raise  # the server's cancel, not the client's
    finally:
        hang_up.cancel()


async def _hang_up(receive: Receive, respond: asyncio.Task) -> None:
    """After the body, the next message is the client hanging up: stop the turn then (it is
    saved as stopped, like the page's Stop)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    respond.cancel()


async def _respond(scope, send: Send, deployment_id: int, token: str, body: bytes | None) -> None:
    if body is None:
        detail = body_too_large()
        await _send_json(send, ChatAnswer(413, {"detail": detail}))
        return
    try:
        data = jsonlimits.loads(body)
    except ValueError as exc:
        await _send_json(send, ChatAnswer(400, {"detail": f"JSON parse error - {exc}"}))
        return
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    trace_form = query.get("trace", ["normalized"])[-1]
    # The token is checked by the turn service, in the same database step as the turn's start.
    answer = await chat_answer(deployment_id, data, api_token=token, trace_form=trace_form)
    if answer.events is None:
        await _send_json(send, answer)
    else:
        await _send_events(send, answer)


async def _send_json(send: Send, answer: ChatAnswer) -> None:
    await send_json_body(send, answer.status, answer.body, answer.headers)


async def _send_events(send: Send, answer: ChatAnswer) -> None:
    headers = response_headers(b"text/event-stream", answer.headers)
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    events = answer.events
    assert events is not None
    try:
        async for event in events:
            await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
    finally:
        with suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]
    await send({"type": "http.response.body", "body": b""})
