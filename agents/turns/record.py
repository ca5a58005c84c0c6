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
    """The turn's save through the ORM: its row, the conversation's title and inputs, the key's
    link, in one transaction (on PostgreSQL each commit waits for the disk: one, not three).
    agents/turns/pg_async.py writes the same rows without a thread."""
    prepare_save(turn, conversation)
    with transaction.atomic():
        _insert(turn)
        conversation.save(update_fields=CONVERSATION_TOUCHED)
        if key:
            TurnKey.objects.filter(user_id=turn.user_id, key=key).update(turn=turn)
        if detected_schema:
            Deployment.objects.filter(pk=turn.deployment_id, detected_schema="").update(
                detected_schema=detected_schema
            )
    return turn


# The conversation's name, its inputs for the next turn, and its place at the top of the list.
CONVERSATION_TOUCHED = ["title", "custom_inputs", "updated_at"]


def prepare_save(turn: RequestLog, conversation: Conversation) -> None:
    """Everything a save computes before its statements, whichever driver runs them."""
    prepare_trace(turn)
    if not conversation.title:
        conversation.title = turn.request.strip().splitlines()[0][:TITLE_CHARS]
    conversation.custom_inputs = turn.custom_inputs


def prepare_trace(turn: RequestLog) -> None:
    # Off the event loop for a big trace (bench/trace_render.py: normalizing one takes long).
    # Once per turn: the outline (what the tree opens from) and the API's answer
    # (`normalized_trace`, read by TurnOutputSerializer) share it.
    if turn.trace:
        with gc_paused():  # cyclic GC passes over the normalized trace's objects tripled the time
            turn.normalized_trace = normalize_trace(turn.trace)
            turn.trace_outline = outline_from(turn.normalized_trace)


# What reading a background run's end fills in (agents/background/collect.py).
RUN_END_FIELDS = [
    "status_code",
    "execution_time_ms",
    "response",
    "response_raw",
    "response_raw_truncated",
    "trace",
    "trace_outline",
    "mlflow_trace_id",
    "output_items",
    "incomplete",
    "custom_outputs",
    "error",
    "error_detail",
    "request_metadata",
]


def finish_run(turn: RequestLog) -> tuple[RequestLog, bool]:
    """A background turn's end, written once: only a row still `running` takes it (whoever read
    the run's end first: the page, the API call, the poll or the sweep). Returns the row as
    saved and whether this call was the one that wrote it."""
    prepare_trace(turn)
    turn.agent_run_state = "finished"
    values = {name: getattr(turn, name) for name in [*RUN_END_FIELDS, "agent_run_state"]}
    written = RequestLog.objects.filter(pk=turn.pk, agent_run_state="running").update(**values)
    saved = RequestLog.objects.select_related("deployment").get(pk=turn.pk)
    if written and hasattr(turn, "normalized_trace"):
        saved.normalized_trace = turn.normalized_trace
    return saved, bool(written)


def keep_trace_id(turn_id: int, trace_id: str) -> None:
    """A trace id a background run's stream carried, for a turn finished without one (by a
    reader of the run's final state, which may leave it out)."""
    RequestLog.objects.filter(pk=turn_id, mlflow_trace_id="").update(mlflow_trace_id=trace_id[:128])


def keeps_agent_request_id(turn: RequestLog) -> bool:
    """The id a rating refers to is the agent's, unless it gave none or one that cannot sit in
    a URL or an HTML id (or, found by the unique index on insert, one we already have)."""
    return bool(_SAFE_REQUEST_ID.fullmatch(turn.databricks_request_id))


def use_own_request_id(turn: RequestLog) -> None:
    """Our id instead of the agent's, which is kept in the metadata."""
    agent_id = turn.databricks_request_id
    if agent_id:
        turn.request_metadata["agent_request_id"] = agent_id[:500]
    turn.databricks_request_id = str(uuid.uuid4())


def _insert(turn: RequestLog) -> None:
    # A taken id is found by the unique index, not by a query before every insert.
    if keeps_agent_request_id(turn):
        try:
            with transaction.atomic():  # a savepoint: the failed insert must not end the save
                turn.save(force_insert=True)
            return
        except IntegrityError:
            turn.pk = None  # taken: below with our own id
    use_own_request_id(turn)
    turn.save(force_insert=True)
