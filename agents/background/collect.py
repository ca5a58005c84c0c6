"""Reading a background run's end: one GET of its state, and the turn finished once.

Every reader uses it: the turn's own request when it has followed the run to its end, the
page's poll of a turn still running, and the Celery sweep (agents.tasks) that finishes the runs
nobody is watching (a closed page, a web process that restarted). It is safe to call in any
number of places at once: record.finish_run writes only a row still `running`.
"""

import logging
import time
from datetime import timedelta

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents.auth import AgentAuthError, request_headers
from agents.background.protocols import COMPLETED, FAILED, RUNNING, protocol_for
from agents.client import AgentCallError, AgentResponse, excerpt, get_checked, turn_ended
from agents.models import EndpointKind, RequestLog
from agents.schemas import AgentReplyError, AgentRuntimeAdapter, ResponsesAdapter
from agents.schemas.base import Adapter, error_message
from agents.turns import record
from agents.turns.db import run_db

logger = logging.getLogger(__name__)
STATUS_TIMEOUT_S = 10.0
SWEEP_BATCH = 1000


def adapter_of(kind: str) -> Adapter:
    """Agent Runtime speaks its invocation API; a LongRunningAgentServer is a ResponsesAgent."""
    return AgentRuntimeAdapter() if kind == EndpointKind.AGENT_RUNTIME else ResponsesAdapter()


def run_state(kind: str, response: AgentResponse) -> str:
    """RUNNING, COMPLETED or FAILED; an answer in no known state is the run's failure."""
    try:
        return protocol_for(kind).state(response.json)
    except ValueError:
        return FAILED


def apply_end(turn: RequestLog, kind: str, response: AgentResponse, trace_id: str = "") -> None:
    """The run's final state into the turn: its answer, or why it failed. `trace_id`: one the
    run's stream carried (a LongRunningAgentServer's state leaves it out for streamed runs)."""
    turn.keep_raw("response_raw", response.text)
    turn.execution_time_ms = elapsed_ms(turn)
    state = run_state(kind, response)
    if state == COMPLETED:
        try:
            reply = adapter_of(kind).parse_reply(response.json)
            reply.trace_id = reply.trace_id or trace_id or turn.mlflow_trace_id or None
            turn.apply_reply(reply, 200)
            turn.incomplete = False
            turn.error = turn.error_detail = ""
            return
        except AgentReplyError as exc:
            message = f"The agent's answer was not understood: {str(exc).rstrip('.')}."
            turn.fail(message, f"body: {excerpt(response.text)}", 502)
            return
    error = response.json.get("error") if isinstance(response.json, dict) else None
    reason = error_message(error) if error else "the run did not complete"
    turn.fail(f"The agent's run failed: {reason}", f"run state: {excerpt(response.text)}", 502)


def apply_lost(turn: RequestLog, exc: AgentCallError) -> None:
    """The agent no longer knows the run (404: a server that keeps runs only in memory restarted,
    or kept it past its retention)."""
    turn.execution_time_ms = elapsed_ms(turn)
    turn.fail("The agent no longer knows this run; its answer is lost.", exc.detail, 502)


def apply_timeout(turn: RequestLog) -> None:
    limit = settings.BACKGROUND_RUN_MAX_SECONDS
    turn.execution_time_ms = elapsed_ms(turn)
    turn.fail(
        f"No answer within {limit:,} s; the app stopped waiting for this run.",
        f"run {turn.agent_run_id} still running after {limit} s",
        504,
    )


async def read_state(turn: RequestLog, headers: dict[str, str]) -> AgentResponse:
    deployment = turn.deployment
    url = protocol_for(deployment.endpoint_kind).status_url(
        deployment.query_endpoint, turn.agent_run_id
    )
    return await get_checked(url, headers=headers, timeout_s=STATUS_TIMEOUT_S)


async def refresh(turn: RequestLog, *, trace_id: str = "") -> RequestLog:
    """Ask the agent once how the turn's run stands; finish the turn if it has ended (or can no
    longer end). Returns the turn as it is now. A failure to ask leaves it running."""
    if turn.agent_run_state != "running":
        return turn
    if timezone.now() - turn.created_at > timedelta(seconds=settings.BACKGROUND_RUN_MAX_SECONDS):
        apply_timeout(turn)
        return (await run_db(record.finish_run, turn))[0]
    try:
        response = await read_state(turn, await request_headers(turn.deployment))
    except AgentAuthError as exc:
        logger.warning("background run %s: no credentials: %s", turn.agent_run_id, exc)
        return turn
    except AgentCallError as exc:
        if exc.status_code != 404:
            logger.warning("background run %s: %s", turn.agent_run_id, exc.detail)
            return turn
        apply_lost(turn, exc)
        return (await run_db(record.finish_run, turn))[0]
    if run_state(turn.deployment.endpoint_kind, response) == RUNNING:
        return turn
    apply_end(turn, turn.deployment.endpoint_kind, response, trace_id)
    return (await run_db(record.finish_run, turn))[0]


def refresh_now(turn: RequestLog) -> RequestLog:
    """`refresh`, for synchronous callers (a Celery task, a DRF view): its own event loop, whose
    HTTP session is closed with it."""
    return async_to_sync(_refresh_and_close)(turn)


async def _refresh_and_close(turn: RequestLog) -> RequestLog:
    try:
        return await refresh(turn)
    finally:
        await turn_ended()


def running_turn(turn_id: int) -> RequestLog | None:
    return (
        RequestLog.objects.select_related("deployment")
        .filter(pk=turn_id, agent_run_state="running")
        .first()
    )


def turns_due_a_check() -> list[int]:
    """The running turns the sweep should ask about now, marked as asked: each at most once per
    BACKGROUND_RUN_CHECK_SECONDS, however long its check takes or waits in the queue."""
    now = timezone.now()
    due = now - timedelta(seconds=settings.BACKGROUND_RUN_CHECK_SECONDS)
    with transaction.atomic():
        turn_ids = list(
            RequestLog.objects.filter(agent_run_state="running")
            .filter(Q(agent_run_checked_at__isnull=True) | Q(agent_run_checked_at__lt=due))
            .order_by("created_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        RequestLog.objects.filter(pk__in=turn_ids).update(agent_run_checked_at=now)
    return turn_ids


def elapsed_ms(turn: RequestLog) -> int:
    started = turn.timestamp_ms or int(time.time() * 1000)
    return max(0, min(int(time.time() * 1000) - started, 2**31 - 1))
