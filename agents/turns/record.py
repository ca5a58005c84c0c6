"""The database side of a turn (synchronous; agents/turns/db.py runs it off the event loop):
idempotency keys before the call, and the one save after it."""

import re
import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Conversation, Deployment, RequestLog, TurnKey
from agents.trace_outline import outline_from
from agents.trace_values import gc_paused
from agents.traces import normalize_trace

TITLE_CHARS = 80
# A key whose send never finished (the process died) may be used again after this long.
ABANDONED_KEY_GRACE = timedelta(seconds=60)
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def claim_key(user, key: str, conversation: Conversation, timeout_s: int):
    """False: the key is ours now. A RequestLog: that key's turn. None: still being sent."""
    try:
        with transaction.atomic():
            TurnKey.objects.create(user=user, key=key, conversation=conversation)
        return False
    except IntegrityError:
        pass
    claim = TurnKey.objects.select_related("turn").filter(user=user, key=key).first()
    if claim is None:  # deleted meanwhile: claim it again
        return claim_key(user, key, conversation, timeout_s)
    if claim.turn is not None:
        return claim.turn
    grace = timedelta(seconds=timeout_s) + ABANDONED_KEY_GRACE
    if claim.created_at < timezone.now() - grace:
        taken = TurnKey.objects.filter(
            pk=claim.pk, turn__isnull=True, created_at=claim.created_at
        ).update(created_at=timezone.now())
        if taken:
            return False
    return None


def conversation_of_key(user, key: str) -> Conversation | None:
    """The conversation a retried send's first send went to (so it starts no other one)."""
    if not key:
        return None
    claim = TurnKey.objects.select_related("conversation").filter(user=user, key=key).first()
    return claim.conversation if claim is not None else None


def keyed_turn(user, key: str) -> RequestLog | None:
    claim = TurnKey.objects.select_related("turn").filter(user=user, key=key).first()
    return claim.turn if claim is not None else None


def save_turn(
    turn: RequestLog, *, conversation: Conversation, key: str, detected_schema: str
) -> RequestLog:
    """The turn's save: its row first (the record that must not be lost), then the
    conversation's title and inputs and the key's link, each its own statement: no
    BEGIN/COMMIT round trips on the hot path. A crash between them leaves a logged turn whose
    key a retry may send again after the grace, never a key pointing nowhere."""
    # Here, in a worker thread, not on the event loop: normalizing a big trace takes long
    # (bench/trace_render.py). Once per turn: the outline (what the tree opens from) and the
    # API's answer (`normalized_trace`, read by TurnOutputSerializer) share it.
    if turn.trace:
        with gc_paused():  # cyclic GC passes over the normalized trace's objects tripled the time
            turn.normalized_trace = normalize_trace(turn.trace)
            turn.trace_outline = outline_from(turn.normalized_trace)
    _insert(turn)
    _touch(conversation, turn)
    if key:
        TurnKey.objects.filter(user_id=turn.user_id, key=key).update(turn=turn)
    if detected_schema:
        Deployment.objects.filter(pk=turn.deployment_id, detected_schema="").update(
            detected_schema=detected_schema
        )
    return turn


def _touch(conversation: Conversation, turn: RequestLog) -> None:
    """The conversation's name, its inputs for the next turn, and its place at the top of the
    list (`updated_at`): one UPDATE."""
    if not conversation.title:
        conversation.title = turn.request.strip().splitlines()[0][:TITLE_CHARS]
    conversation.custom_inputs = turn.custom_inputs
    conversation.save(update_fields=["title", "custom_inputs", "updated_at"])


def _insert(turn: RequestLog) -> None:
    """The id a rating refers to: the agent's, unless it gave none, one that cannot sit in a URL
    or an HTML id, or one we already have; then ours, and the agent's is kept in the metadata.
    A taken id is found by the unique index, not by a query before every insert."""
    agent_id = turn.databricks_request_id
    if _SAFE_REQUEST_ID.fullmatch(agent_id):
        try:
            _insert_once(turn)
            return
        except IntegrityError:
            turn.pk = None  # taken: below with our own id
    if agent_id:
        turn.request_metadata["agent_request_id"] = agent_id[:500]
    turn.databricks_request_id = str(uuid.uuid4())
    turn.save(force_insert=True)


def _insert_once(turn: RequestLog) -> None:
    if transaction.get_autocommit():
        turn.save(force_insert=True)  # a failed statement in autocommit needs no savepoint
        return
    with transaction.atomic():  # inside a transaction (tests, a caller's): a savepoint
        turn.save(force_insert=True)
