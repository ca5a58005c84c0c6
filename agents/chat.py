"""Conversations, and the checks a turn passes before it is sent. The turn itself is
agents/turns.py (async); `chat_turn` runs it from synchronous code."""

from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError

from agents.client import close_http_client
from agents.custom_inputs import check_custom_inputs
from agents.models import Conversation, Deployment, RequestLog


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
    idempotency_key: str = "",
) -> RequestLog:
    """One turn from synchronous code (tests, scripts, management commands): see agents.turns.

    Bad input raises ValidationError and sends and logs nothing; a failed call is a logged turn
    whose `error` is set.
    """
    from agents.turns import TurnInput, send_turn

    turn_input = TurnInput(
        deployment=deployment,
        user=user,
        conversation=conversation,
        message=message,
        custom_inputs=custom_inputs,
        history=history,
        idempotency_key=idempotency_key,
    )

    async def run() -> RequestLog:
        try:
            return (await send_turn(turn_input)).turn
        finally:
            await close_http_client()  # its event loop ends with this call

    return async_to_sync(run)()
