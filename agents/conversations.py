"""Conversations: one user's chat with one deployment, whose id is the agent's conversation_id."""

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError

from agents.models import Conversation, Deployment


def conversation_create(*, deployment: Deployment, user: AbstractBaseUser) -> Conversation:
    conversation = new_conversation(deployment=deployment, user=user)
    conversation.save(force_insert=True)
    return conversation


def new_conversation(*, deployment: Deployment, user: AbstractBaseUser) -> Conversation:
    """Unsaved (agents/turns/pg_async.py saves it without the ORM)."""
    return Conversation(
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
