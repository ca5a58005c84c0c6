"""A chat turn through the proxy: build the request for the deployment's schema, call the agent,
read the reply, and log the turn (one RequestLog row per turn, failed turns included)."""

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from agents.adapters import AgentReplyError, adapter_for
from agents.auth import AgentAuthError, auth_headers
from agents.client import AgentCallError, excerpt, post_json
from agents.custom_inputs import check_custom_inputs
from agents.models import Conversation, Deployment, RequestLog

logger = logging.getLogger(__name__)
TITLE_CHARS = 80
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def conversation_create(*, deployment: Deployment, user: AbstractBaseUser) -> Conversation:
    return Conversation.objects.create(
        deployment=deployment, user=user, custom_inputs=dict(deployment.default_custom_inputs)
    )


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = title.strip()[:200]
    if not title:
        raise ValidationError("A conversation needs a name.")
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_history(conversation: Conversation) -> list[dict[str, str]]:
    """The messages of the conversation's successful turns, oldest first."""
    messages: list[dict[str, str]] = []
    turns = conversation.turns.filter(error="").order_by("created_at")
    for request, response in turns.values_list("request", "response"):
        messages += [
            {"role": "user", "content": request},
            {"role": "assistant", "content": response},
        ]
    return messages


def validate_turn(*, deployment: Deployment, message: str, custom_inputs: Any) -> dict:
    """The checks a turn must pass before anything is created or sent; returns custom_inputs."""
    if not deployment.enabled:
        raise ValidationError("This deployment is disabled; an admin can enable it again.")
    if not message.strip():
        raise ValidationError("Type a message first.")
    return check_custom_inputs(deployment, custom_inputs)


def chat_turn(
    *,
    deployment: Deployment,
    user: AbstractBaseUser,
    conversation: Conversation,
    message: str,
    custom_inputs: Any,
    history: list[dict[str, str]] | None = None,
) -> RequestLog:
    """Send one user message; returns the logged turn, whose `error` is set when it failed.

    Bad input (an empty message, custom_inputs that do not pass) raises ValidationError and
    sends and logs nothing. `history` replaces the conversation's own (the API's `messages`).
    """
    custom_inputs = validate_turn(
        deployment=deployment, message=message, custom_inputs=custom_inputs
    )
    messages = [
        *(conversation_history(conversation) if history is None else history),
        {"role": "user", "content": message},
    ]
    started, clock = time.time(), time.monotonic()
    turn = RequestLog(
        deployment=deployment,
        user=user,
        conversation=conversation,
        client_request_id=str(uuid.uuid4()),
        date=datetime.fromtimestamp(started, UTC).date(),
        timestamp_ms=int(started * 1000),
        request=message,
        custom_inputs=custom_inputs,
        request_metadata={
            "endpoint": deployment.endpoint_name,
            "model": deployment.model_name,
            "version": deployment.model_version,
        },
    )
    try:
        adapter = adapter_for(deployment.agent_schema)
        body = adapter.build_request(
            messages=messages, custom_inputs=custom_inputs, conversation_id=str(conversation.pk)
        )
        _keep_raw(turn, "request_raw", json.dumps(body))
        response = post_json(
            deployment.query_endpoint,
            body,
            headers=auth_headers(deployment),
            timeout_s=deployment.request_timeout_s,
        )
        _keep_raw(turn, "response_raw", response.text)
        reply = adapter.parse_reply(response.json)
        turn.status_code = response.status_code
        turn.response = reply.text
        turn.custom_outputs = reply.custom_outputs
        turn.trace = reply.trace
        turn.databricks_request_id = reply.databricks_request_id or ""
    except AgentCallError as exc:
        _fail(turn, exc.message, exc.detail, exc.status_code)
        _keep_raw(turn, "response_raw", exc.raw)
    except AgentReplyError as exc:
        _fail(
            turn,
            f"The agent's answer was not understood: {str(exc).rstrip('.')}.",
            f"body: {excerpt(turn.response_raw)}",
            502,
        )
    except AgentAuthError as exc:
        _fail(turn, "The app has no usable credentials for this endpoint.", str(exc), 401)
    turn.execution_time_ms = int((time.monotonic() - clock) * 1000)
    return _save_turn(turn, conversation)


def _fail(turn: RequestLog, message: str, detail: str, status_code: int) -> None:
    turn.error, turn.error_detail, turn.status_code = message, detail, status_code
    logger.warning(
        "agent turn failed: deployment=%s status=%s %s",
        turn.deployment_id,
        status_code,
        detail,
    )


def _keep_raw(turn: RequestLog, field: str, text: str) -> None:
    limit = settings.REQUEST_LOG_MAX_BODY_BYTES
    encoded = text.encode()
    if len(encoded) > limit:
        text = encoded[:limit].decode("utf-8", errors="ignore")
        setattr(turn, f"{field}_truncated", True)
    setattr(turn, field, text)


@transaction.atomic
def _save_turn(turn: RequestLog, conversation: Conversation) -> RequestLog:
    request_id = turn.databricks_request_id
    # The id a rating refers to: the agent's, unless it gave none, one that cannot sit in a URL
    # or an HTML id, or one we already have; then ours, and the agent's is kept in the metadata.
    usable = bool(_SAFE_REQUEST_ID.fullmatch(request_id))
    if not usable or RequestLog.objects.filter(databricks_request_id=request_id).exists():
        if request_id:
            turn.request_metadata["agent_request_id"] = request_id[:500]
        turn.databricks_request_id = str(uuid.uuid4())
    turn.save()
    if not conversation.title:
        conversation.title = turn.request.strip().splitlines()[0][:TITLE_CHARS]
    conversation.custom_inputs = turn.custom_inputs
    conversation.save(update_fields=["title", "custom_inputs", "updated_at"])
    return turn
