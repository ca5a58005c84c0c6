"""The rating API's lean path: a token-authenticated `POST /api/v1/requests/<id>/assessments/`
with a JSON body is served straight from the ASGI application (reviewapp/asgi.py), in front of
Django's handler, when it is a rating that will be saved (feedback/rating_on_loop.py).

Why: through Django's handler and DRF a rating cost ~9 ms of CPU in the process (its queries
through the ORM in a thread, middleware, DRF's dispatch), so one process saturated near 80
ratings/s (bench/README.md). Here it is the body's check by the view's own serializer, two
round trips awaited on the loop, and the view's own output serializer.

Everything else goes to Django's view with the body replayed, unchanged: a body the serializer
refuses, a rating the service would refuse, a reviewer or turn this process does not know
yet, SQLite. Its answers, errors included, are the API's own.
"""

import re

from rest_framework.exceptions import ValidationError as BodyInvalid
from rest_framework.renderers import JSONRenderer

from feedback import rating_on_loop
from feedback.apis import RatingOutputSerializer, RequestAssessmentCreateApi
from reviewapp import jsonlimits, pg_loop
from reviewapp.api import body_too_large
from reviewapp.lean_asgi import (
    ASGIApp,
    HungUp,
    Receive,
    Send,
    json_token,
    read_body,
    replayed,
    send_bytes,
    send_json,
)

RATING_PATH = re.compile(r"/api/v1/requests/([^/]+)/assessments/")
_BODY = RequestAssessmentCreateApi.InputSerializer()  # checks each body; its fields made once
_RENDERER = JSONRenderer()  # DRF's, so the answer's bytes are the view's


def lean_target(scope: dict) -> tuple[str, str] | None:
    """(request id, token) when this request is one the lean path may serve."""
    found = RATING_PATH.fullmatch(scope["path"])
    if found is None or not pg_loop.enabled():
        return None
    token = json_token(scope)
    return (found.group(1), token) if token else None


async def serve(
    scope: dict, receive: Receive, send: Send, request_id: str, token: str, *, django: ASGIApp
) -> None:
    try:
        body = await read_body(receive)
    except HungUp:
        return
    if body is None:
        await send_json(send, 413, {"detail": body_too_large()})
        return
    rating = await _rate(request_id, token, body)
    if rating is None:  # Django's view answers it, from the same body
        await django(scope, replayed(body, receive), send)
        return
    data = RatingOutputSerializer(rating).data
    await send_bytes(send, 201, _RENDERER.render(data))


async def _rate(request_id: str, token: str, body: bytes):
    try:
        data = jsonlimits.loads(body)
        checked = _BODY.run_validation(data)
    except (ValueError, BodyInvalid):
        return None
    return await rating_on_loop.rating_create_on_loop(
        token,
        request_id,
        text_assessments=checked.get("text_assessments"),
        retrieval_assessments=checked.get("retrieval_assessments"),
    )
