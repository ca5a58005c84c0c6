"""The database side of a chat turn (synchronous; agents/turns.py runs it in threads): claim the
idempotency key and prepare the row before the call, fill it from the reply, save it after."""

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from agents.models import Conversation, Deployment, RequestLog, TurnKey
from agents.schemas import AgentReply
from agents.trace_outline import outline_of

if TYPE_CHECKING:
    from agents.turns import TurnInput

logger = logging.getLogger(__name__)
TITLE_CHARS = 80
# A key whose send never finished (the process died) may be used again after this long.
ABANDONED_KEY_GRACE = timedelta(seconds=60)
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


@dataclass
class Begun:
    turn: RequestLog  # not saved yet
    messages: list[dict[str, str]]


def begin(turn_input: "TurnInput") -> Begun | RequestLog | None:
    """Validate, claim the key, and prepare the row. Returns the earlier turn when the key was
    already used, or None when that earlier send is still running."""
    from agents.chat import conversation_history, validate_turn

    custom_inputs = validate_turn(
        deployment=turn_input.deployment,
        message=turn_input.message,
        custom_inputs=turn_input.custom_inputs,
    )
    if turn_input.idempotency_key:
        earlier = _claim_key(turn_input)
        if earlier is not False:
            return earlier
    conversation, deployment = turn_input.conversation, turn_input.deployment
    history = turn_input.history
    messages = [
        *(conversation_history(conversation) if history is None else history),
        {"role": "user", "content": turn_input.message},
    ]
    now = timezone.now()
    turn = RequestLog(
        deployment=deployment,
        user=turn_input.user,
        conversation=conversation,
        client_request_id=turn_input.idempotency_key or str(uuid.uuid4()),
        date=now.astimezone(UTC).date(),
        timestamp_ms=int(now.timestamp() * 1000),
        request=turn_input.message,
        custom_inputs=custom_inputs,
        request_metadata={
            "endpoint": deployment.endpoint_name,
            "model": deployment.model_name,
            "version": deployment.model_version,
        },
    )
    return Begun(turn=turn, messages=messages)


def begin_and_release(turn_input: "TurnInput") -> Begun | RequestLog | None:
    try:
        return begin(turn_input)
    finally:
        release_connections()


def release_connections() -> None:
    """Give this thread's database connections back (to psycopg's pool under ASGI) before the
    turn waits for its agent: a thousand turns in flight must not hold a thousand connections
    (or wait for one of the pool's few). Not inside a transaction: tests run in one."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


def _claim_key(turn_input: "TurnInput") -> RequestLog | bool | None:
    """False: the key is ours now. A RequestLog: that key's turn. None: still being sent."""
    user, key = turn_input.user, turn_input.idempotency_key
    try:
        with transaction.atomic():
            TurnKey.objects.create(user=user, key=key, conversation=turn_input.conversation)
        return False
    except IntegrityError:
        pass
    claim = TurnKey.objects.select_related("turn").filter(user=user, key=key).first()
    if claim is None:  # deleted meanwhile: claim it again
        return _claim_key(turn_input)
    if claim.turn is not None:
        return claim.turn
    grace = timedelta(seconds=turn_input.deployment.request_timeout_s) + ABANDONED_KEY_GRACE
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


def keyed_turn(user, key: str, *, release: bool = False) -> RequestLog | None:
    try:
        claim = TurnKey.objects.select_related("turn").filter(user=user, key=key).first()
        return claim.turn if claim is not None else None
    finally:
        if release:  # polled while another send runs: hold no connection between polls
            release_connections()


def keep_raw(turn: RequestLog, field_name: str, text: str) -> None:
    limit = settings.REQUEST_LOG_MAX_BODY_BYTES
    encoded = text.encode()
    if len(encoded) > limit:
        text = encoded[:limit].decode("utf-8", errors="ignore")
        setattr(turn, f"{field_name}_truncated", True)
    setattr(turn, field_name, text)


def apply_reply(turn: RequestLog, reply: AgentReply, status_code: int) -> None:
    turn.status_code = status_code
    turn.response = reply.text
    turn.custom_outputs = reply.custom_outputs
    turn.trace = reply.trace
    turn.mlflow_trace_id = (reply.trace_id or "")[:128]
    turn.output_items = reply.items
    turn.databricks_request_id = reply.databricks_request_id or ""


def keep_partial(turn: RequestLog, reply: AgentReply | None) -> None:
    """A stream that ended early: keep the answer so far, marked incomplete."""
    if reply is None or not (reply.text or reply.items):
        return
    apply_reply(turn, reply, turn.status_code)
    turn.incomplete = True


def fail(turn: RequestLog, message: str, detail: str, status_code: int) -> None:
    turn.error, turn.error_detail, turn.status_code = message, detail, status_code
    logger.warning(
        "agent turn failed: deployment=%s status=%s %s", turn.deployment_id, status_code, detail
    )


def finish(turn_input: "TurnInput", turn: RequestLog, detected_schema: str) -> RequestLog:
    # Before the transaction, not in it: a big trace's outline takes as long as normalizing
    # it (bench/trace_render.py "outline"); here, in a worker thread, not on the event loop.
    turn.trace_outline = outline_of(turn.trace)
    return _finish_atomically(turn_input, turn, detected_schema)


@transaction.atomic
def _finish_atomically(
    turn_input: "TurnInput", turn: RequestLog, detected_schema: str
) -> RequestLog:
    saved = _save_turn(turn, turn_input.conversation)
    if turn_input.idempotency_key:
        TurnKey.objects.filter(user=turn_input.user, key=turn_input.idempotency_key).update(
            turn=saved
        )
    if detected_schema:
        Deployment.objects.filter(pk=turn_input.deployment.pk, detected_schema="").update(
            detected_schema=detected_schema
        )
        turn_input.deployment.detected_schema = detected_schema
    return saved


def finish_and_close(turn_input: "TurnInput", turn: RequestLog, detected_schema: str) -> None:
    """`finish` from a pool thread no request owns: give its connection back afterwards."""
    try:
        finish(turn_input, turn, detected_schema)
    finally:
        connections.close_all()


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
