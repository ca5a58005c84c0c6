"""A turn's start, one service for the page, the API and the tests: admit it, check who asks
and what, find or start its conversation, claim its idempotency key, prepare its row.

Everything that can refuse the turn runs before anything is written: bad input or missing
rights change nothing.
"""

import uuid
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils import timezone
from psycopg import OperationalError

from agents import access, selectors
from agents.conversations import conversation_create, conversation_history, new_conversation
from agents.custom_inputs import check_custom_inputs
from agents.models import Conversation, Deployment, RequestLog
from agents.turns import admission, db, pg_async, record
from reviewapp import pg_loop

UNSET: Any = object()  # custom_inputs not given: the conversation's (a new one: the default's)


@dataclass
class StartedTurn:
    """A turn admitted and checked. `row` is its RequestLog, not saved yet; a reused key instead
    gives `earlier` (that key's turn) or `pending` (its first send is still running)."""

    user: AbstractBaseUser
    deployment: Deployment
    conversation: Conversation
    is_new_conversation: bool  # the caller named none: a page pushes the conversation's URL
    idempotency_key: str
    slot: admission.Slot
    messages: list[dict[str, str]] = field(default_factory=list)
    row: RequestLog | None = None
    earlier: RequestLog | None = None
    pending: bool = False


class NotAuthenticated(Exception):
    """No active user has this API token."""


async def turn_start(
    *,
    user: AbstractBaseUser | None = None,
    api_token: str = "",
    deployment_id: int,
    message: str,
    custom_inputs: Any = UNSET,
    conversation_id: object = None,
    history: list[dict[str, str]] | None = None,
    idempotency_key: str = "",
) -> StartedTurn:
    """For `user`, or the user of `api_token` (the API's lean path: found in the same database
    step). Raises admission.Overloaded (refused at once), NotAuthenticated, PermissionDenied or
    Http404 (rights), ValidationError (bad input); then nothing was written. `history`
    replaces the conversation's own messages (the API's `messages`)."""
    slot = admission.admit()
    asked = dict(
        user=user,
        api_token=api_token,
        deployment_id=deployment_id,
        message=message,
        custom_inputs=custom_inputs,
        conversation_id=conversation_id,
        history=history,
        key=idempotency_key,
    )
    try:
        if db.on_event_loop():
            started = await _start_on_loop(slot, **asked)
            if started is not None:
                return started
        return await db.run_db(_start, slot, **asked)
    except BaseException as exc:
        slot.release()
        if admission.pool_exhausted(exc):
            raise admission.Overloaded(admission.DATABASE_BUSY) from None
        raise


def _start(
    slot, *, user, api_token, deployment_id, message, custom_inputs, conversation_id, history, key
):
    """The start through the ORM, in a thread: any database, any case."""
    access.follow_changes()
    if user is None:
        user = access.user_for_token(api_token)
        if user is None:
            raise NotAuthenticated("Invalid token.")
    deployment = access.chat_deployment(user, deployment_id)
    _check(deployment, message)
    # A retried send goes to its first send's conversation (it must not start another).
    conversation = record.conversation_of_key(user, key)
    if conversation is None and conversation_id:
        conversation = selectors.conversation_get_for_user(user, deployment, conversation_id)
    custom_inputs = _inputs(deployment, conversation, custom_inputs)
    is_new = conversation is None
    if conversation is None:
        conversation = conversation_create(deployment=deployment, user=user)
    started = StartedTurn(user, deployment, conversation, not conversation_id, key, slot)
    if key:
        earlier = record.claim_key(user, key, conversation, deployment.request_timeout_s)
        if earlier is None:
            started.pending = True
            return started
        if earlier is not False:
            started.earlier = earlier
            return started
    if history is None:
        history = [] if is_new else conversation_history(conversation)
    _prepare(started, history, message, custom_inputs)
    return started


async def _start_on_loop(
    slot, *, user, api_token, deployment_id, message, custom_inputs, conversation_id, history, key
) -> StartedTurn | None:
    """The everyday start on PostgreSQL, its reads one round trip awaited on the loop
    (pg_async.py): the same steps as `_start`, or None, before anything is written, when the
    ORM must answer (the access cache is cold or changed, an idempotency key is to be claimed,
    a pooled connection turned out dead)."""
    if key:
        return None
    if user is None:
        user = access.known_user(api_token)
        if user is access.NOT_KNOWN:
            return None
    try:
        async with pg_loop.connection() as conn:
            reads = await pg_async.start_reads(
                conn,
                user_id=user.pk if user is not None else 0,
                deployment_id=deployment_id,
                conversation_id=conversation_id,
                history=history is None,
            )
            if not access.follows(reads.stamp):
                return None  # what the cache said (the user above included) may be stale
            if user is None:
                raise NotAuthenticated("Invalid token.")
            deployment = access.known_chat_deployment(user, deployment_id)
            if deployment is access.NOT_KNOWN:
                return None
            _check(deployment, message)
            conversation = reads.conversation
            if conversation_id and conversation is None:
                raise Http404("No such conversation.")
            custom_inputs = _inputs(deployment, conversation, custom_inputs)
            if conversation is None:
                conversation = new_conversation(deployment=deployment, user=user)
                await pg_async.insert_conversation(conn, conversation)
    except admission.PoolTimeout:
        raise  # an OperationalError too, but the pool is busy, not dead: refused as busy
    except OperationalError as exc:
        await pg_loop.drop_dead_connections(exc, "turn start: through the ORM instead")
        return None
    started = StartedTurn(user, deployment, conversation, not conversation_id, key, slot)
    _prepare(started, reads.history if history is None else history, message, custom_inputs)
    return started


def _check(deployment: Deployment, message: str) -> None:
    if not deployment.enabled:
        raise ValidationError("This deployment is disabled; an admin can enable it again.")
    if not message.strip():
        raise ValidationError("Type a message first.")


def _inputs(deployment: Deployment, conversation: Conversation | None, given: Any) -> dict:
    """What the turn sends as custom_inputs: as given, else the conversation's (a new one: the
    deployment's default), checked."""
    if given is UNSET:
        given = conversation.custom_inputs if conversation else deployment.default_custom_inputs
    return check_custom_inputs(deployment, given)


def _prepare(started: StartedTurn, history: list, message: str, custom_inputs: dict) -> None:
    started.messages = [*history, {"role": "user", "content": message}]
    started.row = _new_row(started, message, custom_inputs)


def _new_row(started: StartedTurn, message: str, custom_inputs: dict) -> RequestLog:
    deployment, now = started.deployment, timezone.now()
    return RequestLog(
        deployment=deployment,
        user=started.user,
        conversation=started.conversation,
        client_request_id=started.idempotency_key or str(uuid.uuid4()),
        date=now.astimezone(UTC).date(),
        timestamp_ms=int(now.timestamp() * 1000),
        request=message,
        custom_inputs=custom_inputs,
        request_metadata={
            "endpoint": deployment.endpoint_name,
            "model": deployment.model_name,
            "version": deployment.model_version,
        },
    )
