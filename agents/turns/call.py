"""A turn's call, async: build the request for the deployment's schema, call the agent
(streamed or not), read the reply, save the row once.

The wait for the agent is a coroutine on the shared HTTP client, so a slow agent holds no
thread; the database steps run off the event loop (agents/turns/db.py). Every turn ends in one
RequestLog row: answered, failed, cut, or stopped by the user.
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from agents.auth import AgentAuthError, request_headers
from agents.background import collect
from agents.background.call import Ended, run_in_background
from agents.client import (
    AgentCallError,
    NotAStream,
    StreamReader,
    excerpt,
    get_json,
    post_json,
    turn_ended,
)
from agents.models import AgentSchema, Deployment, EndpointKind, RequestLog
from agents.models.deployment import BACKGROUND_KINDS
from agents.schemas import (
    AgentReply,
    AgentReplyError,
    AgentStreamError,
    ItemAdded,
    TextDelta,
    adapter_for,
    schema_for_task,
)
from agents.turns import pg_async, record
from agents.turns.db import on_event_loop, run_db, run_db_detached
from agents.turns.start import StartedTurn
from reviewapp.people import public_id

logger = logging.getLogger(__name__)
TASK_LOOKUP_TIMEOUT_S = 5.0
TASK_LOOKUP_RETRY_S = 600.0  # an endpoint whose task could not be read is asked again after this
KEY_POLL_S = 0.25
STOPPED = "Stopped before the answer was complete."
_task_lookup_failed_at: dict[int, float] = {}


class TurnInProgress(Exception):
    """The same idempotency key is still being sent by another request."""


@dataclass
class TurnDone:
    """The last event of a turn: its saved row."""

    turn: RequestLog


TurnEvent = TextDelta | ItemAdded | TurnDone


async def send_turn(started: StartedTurn) -> RequestLog:
    """One turn without streaming: its saved row. Raises TurnInProgress for a key whose first
    send has not finished."""
    done = None
    async for event in run_turn(started, stream=False):
        if isinstance(event, TurnDone):
            done = event
    assert done is not None  # run_turn always ends with TurnDone or raises
    return done.turn


async def run_turn(started: StartedTurn, *, stream: bool) -> AsyncIterator[TurnEvent]:
    """The turn's events: text deltas and display items while streaming, then TurnDone."""
    try:
        if started.earlier is not None:
            yield TurnDone(started.earlier)
        elif started.pending:
            yield TurnDone(await _wait_for_first_send(started))
        else:
            async for event in _call(started, stream=stream):
                yield event
    finally:
        started.slot.release()
        await turn_ended()


async def _call(started: StartedTurn, *, stream: bool) -> AsyncIterator[TurnEvent]:
    deployment, turn = started.deployment, started.row
    assert turn is not None
    clock, reply, detected = time.monotonic(), None, ""
    streamed: AgentReply | None = None
    assembler = None
    try:
        headers = await request_headers(deployment)
        if deployment.endpoint_kind in BACKGROUND_KINDS:
            async for event in _call_in_background(started, headers, stream=stream):
                yield event
            return
        schema, detected = await _schema(deployment, headers)
        adapter = adapter_for(schema)
        body = adapter.build_request(
            messages=started.messages,
            custom_inputs=turn.custom_inputs,
            conversation_id=str(started.conversation.pk),
            user_id=public_id(started.user),
            stream=stream and deployment.streaming,
            databricks_options=deployment.endpoint_kind == EndpointKind.DATABRICKS,
            model=deployment.openai_model,
        )
        turn.keep_raw("request_raw", json.dumps(body))
        timeout = deployment.request_timeout_s
        if stream and deployment.streaming:
            assembler = adapter.assembler()
            reader = StreamReader(
                deployment.query_endpoint, body, headers=headers, timeout_s=timeout
            )
            try:
                async for chunk in reader:
                    for event in assembler.feed(chunk):
                        yield event
                reply, status = assembler.reply(), reader.status_code
            except NotAStream as exc:  # it answered in one piece after all
                assembler = None
                reply, status = adapter.parse_reply(exc.response.json), exc.response.status_code
                turn.keep_raw("response_raw", exc.response.text)
                yield TextDelta(reply.text)
            finally:
                if assembler is not None:
                    turn.keep_raw("response_raw", reader.raw)
        else:
            response = await post_json(
                deployment.query_endpoint, body, headers=headers, timeout_s=timeout
            )
            turn.keep_raw("response_raw", response.text)
            reply, status = adapter.parse_reply(response.json), response.status_code
        turn.apply_reply(reply, status)
        if deployment.agent_schema == AgentSchema.AUTO and reply.schema not in ("", "auto"):
            detected = detected or reply.schema
    except AgentCallError as exc:
        streamed = _partial(assembler)
        _fail(turn, exc.message, exc.detail, exc.status_code)
        if exc.raw:
            turn.keep_raw("response_raw", exc.raw)
    except AgentStreamError as exc:
        streamed = _partial(assembler)
        _fail(turn, f"The agent reported an error: {exc}", f"stream error: {exc}", 502)
    except AgentReplyError as exc:
        streamed = _partial(assembler)
        _fail(
            turn,
            f"The agent's answer was not understood: {str(exc).rstrip('.')}.",
            f"body: {excerpt(turn.response_raw)}",
            502,
        )
    except AgentAuthError as exc:
        _fail(turn, "The app has no usable credentials for this endpoint.", str(exc), 401)
    except (asyncio.CancelledError, GeneratorExit):
        if turn.pk is not None:
            # Saved already: a background run (which goes on; the page's poll or the sweep
            # finishes it), or a turn whose end was being handed over.
            raise
        # The client went away (Stop, a closed tab): keep what arrived, then let it unwind.
        turn.keep_partial(_partial(assembler))
        _fail(turn, STOPPED, "the client closed the connection", 499)
        turn.execution_time_ms = int((time.monotonic() - clock) * 1000)
        await asyncio.shield(_save(started, detected, detached=True))
        raise
    if streamed is not None:
        turn.keep_partial(streamed)
    turn.execution_time_ms = int((time.monotonic() - clock) * 1000)
    yield TurnDone(await _save(started, detected))


async def _call_in_background(
    started: StartedTurn, headers: dict[str, str], *, stream: bool
) -> AsyncIterator[TurnEvent]:
    deployment, turn = started.deployment, started.row
    body = collect.adapter_of(deployment.endpoint_kind).build_request(
        messages=started.messages,
        custom_inputs=turn.custom_inputs,
        conversation_id=str(started.conversation.pk),
        user_id=public_id(started.user),
        stream=False,
        databricks_options=False,
        model=deployment.openai_model,
    )
    async for event in run_in_background(
        started, headers=headers, body=body, stream=stream and deployment.streaming
    ):
        yield TurnDone(event.turn) if isinstance(event, Ended) else event


async def _save(started: StartedTurn, detected_schema: str, detached: bool = False) -> RequestLog:
    """The turn's one save: awaited on the loop (the lean path on PostgreSQL) or the ORM in a
    thread; `detached` after the client hung up (the request's thread may be gone)."""
    if detected_schema:
        started.deployment.detected_schema = detected_schema
    save = dict(
        conversation=started.conversation,
        key=started.idempotency_key,
        detected_schema=detected_schema,
    )
    if on_event_loop():
        return await pg_async.save_turn(started.row, **save)
    run = run_db_detached if detached else run_db
    return await run(record.save_turn, started.row, **save)


def _fail(turn: RequestLog, message: str, detail: str, status_code: int) -> None:
    turn.fail(message, detail, status_code)
    logger.warning(
        "agent turn failed: deployment=%s status=%s %s", turn.deployment_id, status_code, detail
    )


def sse(event: str, data: dict) -> str:
    """One event of the app's own streams (the page's and the API's)."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _partial(assembler) -> AgentReply | None:
    return assembler.reply() if assembler is not None else None


async def _wait_for_first_send(started: StartedTurn) -> RequestLog:
    deadline = time.monotonic() + started.deployment.request_timeout_s + 10
    while time.monotonic() < deadline:
        await asyncio.sleep(KEY_POLL_S)
        turn = await run_db(record.keyed_turn, started.user, started.idempotency_key)
        if turn is not None:
            return turn
    raise TurnInProgress("This message is still being sent; its answer will appear shortly.")


async def _schema(deployment: Deployment, headers: dict[str, str]) -> tuple[str, str]:
    """The schema to send in, and one to remember when it was just detected: with `auto` on
    Databricks, the endpoint's task says (once)."""
    schema = deployment.effective_schema
    if schema != AgentSchema.AUTO or deployment.endpoint_kind != EndpointKind.DATABRICKS:
        return schema, ""
    failed_at = _task_lookup_failed_at.get(deployment.pk)
    if failed_at is not None and time.monotonic() - failed_at < TASK_LOOKUP_RETRY_S:
        return schema, ""
    detail = await get_json(
        _endpoint_detail_url(deployment), headers=headers, timeout_s=TASK_LOOKUP_TIMEOUT_S
    )
    task = detail.get("task") if isinstance(detail, dict) else None
    found = schema_for_task(task if isinstance(task, str) else None)
    if found is None:
        _task_lookup_failed_at[deployment.pk] = time.monotonic()
        return schema, ""
    return found, found


def _endpoint_detail_url(deployment: Deployment) -> str:
    """GET /api/2.0/serving-endpoints/{name} on the endpoint's workspace (protocol.md §5.3)."""
    origin = urlsplit(deployment.query_endpoint)
    return f"{origin.scheme}://{origin.netloc}/api/2.0/serving-endpoints/{deployment.endpoint_name}"
