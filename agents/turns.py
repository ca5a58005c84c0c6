"""A chat turn through the proxy, async: claim the turn's idempotency key, build the request for
the deployment's schema, call the agent (streamed or not), read the reply, log the turn.

Database work runs in threads (sync_to_async) in two short steps, before and after the call; the
wait for the agent is a coroutine on the shared HTTP client, so a slow agent holds no thread.
Every turn ends in one RequestLog row: answered, failed, cut, or stopped by the user.
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractBaseUser

from agents import turn_log
from agents.auth import AgentAuthError, auth_headers
from agents.client import AgentCallError, NotAStream, StreamReader, excerpt, get_json, post_json
from agents.models import AgentSchema, AuthKind, Conversation, Deployment, EndpointKind, RequestLog
from agents.schemas import (
    AgentReply,
    AgentReplyError,
    AgentStreamError,
    ItemAdded,
    TextDelta,
    adapter_for,
    schema_for_task,
)

logger = logging.getLogger(__name__)
TASK_LOOKUP_TIMEOUT_S = 5.0
TASK_LOOKUP_RETRY_S = 600.0  # an endpoint whose task could not be read is asked again after this
KEY_POLL_S = 0.25
STOPPED = "Stopped before the answer was complete."
_task_lookup_failed_at: dict[int, float] = {}


class TurnInProgress(Exception):
    """The same idempotency key is still being sent by another request."""


@dataclass
class TurnInput:
    deployment: Deployment
    user: AbstractBaseUser
    conversation: Conversation
    message: str
    custom_inputs: Any
    history: list[dict[str, str]] | None = None  # replaces the conversation's own (the API)
    idempotency_key: str = ""


@dataclass
class TurnDone:
    """The last event of a turn: the saved row; `replayed` when an earlier send made it."""

    turn: RequestLog
    replayed: bool = False


TurnEvent = TextDelta | ItemAdded | TurnDone


@dataclass
class _Call:
    """What the call needs, worked out before it; `detected` is a schema to remember after."""

    turn: RequestLog
    messages: list[dict[str, str]]
    detected: str = ""
    headers: dict[str, str] = field(default_factory=dict)


async def send_turn(turn_input: TurnInput) -> TurnDone:
    """One turn without streaming; raises ValidationError (nothing sent, nothing logged) for bad
    input and TurnInProgress for a key whose first send has not finished."""
    done = None
    async for event in run_turn(turn_input, stream=False):
        if isinstance(event, TurnDone):
            done = event
    assert done is not None  # run_turn always ends with TurnDone or raises
    return done


async def run_turn(turn_input: TurnInput, *, stream: bool) -> AsyncIterator[TurnEvent]:
    """The turn's events: text deltas and display items while streaming, then TurnDone."""
    begun = await sync_to_async(turn_log.begin_and_release)(turn_input)
    if isinstance(begun, RequestLog):
        yield TurnDone(begun, replayed=True)
        return
    if begun is None:
        yield TurnDone(await _wait_for_first_send(turn_input), replayed=True)
        return
    call = _Call(turn=begun.turn, messages=begun.messages)
    deployment, turn = turn_input.deployment, call.turn
    clock, reply = time.monotonic(), None
    streamed: AgentReply | None = None
    assembler = None
    try:
        call.headers = await _headers(deployment)
        adapter = adapter_for(await _schema(deployment, call))
        body = adapter.build_request(
            messages=call.messages,
            custom_inputs=turn.custom_inputs,
            conversation_id=str(turn_input.conversation.pk),
            user_id=_user_id(turn_input.user),
            stream=stream and deployment.streaming,
            databricks_options=deployment.endpoint_kind == EndpointKind.DATABRICKS,
            model=deployment.openai_model,
        )
        turn_log.keep_raw(turn, "request_raw", json.dumps(body))
        timeout = deployment.request_timeout_s
        if stream and deployment.streaming:
            assembler = adapter.assembler()
            reader = StreamReader(
                deployment.query_endpoint, body, headers=call.headers, timeout_s=timeout
            )
            try:
                async for chunk in reader:
                    for event in assembler.feed(chunk):
                        yield event
                reply, status = assembler.reply(), reader.status_code
            except NotAStream as exc:  # it answered in one piece after all
                assembler = None
                reply, status = adapter.parse_reply(exc.response.json), exc.response.status_code
                turn_log.keep_raw(turn, "response_raw", exc.response.text)
                yield TextDelta(reply.text)
            finally:
                if assembler is not None:
                    turn_log.keep_raw(turn, "response_raw", reader.raw)
        else:
            response = await post_json(
                deployment.query_endpoint, body, headers=call.headers, timeout_s=timeout
            )
            turn_log.keep_raw(turn, "response_raw", response.text)
            reply, status = adapter.parse_reply(response.json), response.status_code
        turn_log.apply_reply(turn, reply, status)
        if deployment.agent_schema == AgentSchema.AUTO and reply.schema not in ("", "auto"):
            call.detected = call.detected or reply.schema
    except AgentCallError as exc:
        streamed = _partial(assembler)
        turn_log.fail(turn, exc.message, exc.detail, exc.status_code)
        if exc.raw:
            turn_log.keep_raw(turn, "response_raw", exc.raw)
    except AgentStreamError as exc:
        streamed = _partial(assembler)
        turn_log.fail(turn, f"The agent reported an error: {exc}", f"stream error: {exc}", 502)
    except AgentReplyError as exc:
        streamed = _partial(assembler)
        turn_log.fail(
            turn,
            f"The agent's answer was not understood: {str(exc).rstrip('.')}.",
            f"body: {excerpt(turn.response_raw)}",
            502,
        )
    except AgentAuthError as exc:
        turn_log.fail(turn, "The app has no usable credentials for this endpoint.", str(exc), 401)
    except (asyncio.CancelledError, GeneratorExit):
        # The browser went away (Stop, a closed tab): keep what arrived, then let it unwind.
        turn_log.keep_partial(turn, _partial(assembler))
        turn_log.fail(turn, STOPPED, "the client closed the connection", 499)
        turn.execution_time_ms = int((time.monotonic() - clock) * 1000)
        await asyncio.shield(_finish_detached(turn_input, call))
        raise
    if streamed is not None:
        turn_log.keep_partial(turn, streamed)
    turn.execution_time_ms = int((time.monotonic() - clock) * 1000)
    saved = await sync_to_async(turn_log.finish)(turn_input, call.turn, call.detected)
    yield TurnDone(saved)


def sse(event: str, data: dict) -> str:
    """One event of the app's own streams (the page's and the API's)."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _partial(assembler) -> AgentReply | None:
    return assembler.reply() if assembler is not None else None


async def _finish_detached(turn_input: TurnInput, call: _Call) -> None:
    # Not thread_sensitive: the request's own thread may be gone by now.
    await sync_to_async(turn_log.finish_and_close, thread_sensitive=False)(
        turn_input, call.turn, call.detected
    )


async def _wait_for_first_send(turn_input: TurnInput) -> RequestLog:
    deadline = time.monotonic() + turn_input.deployment.request_timeout_s + 10
    while time.monotonic() < deadline:
        await asyncio.sleep(KEY_POLL_S)
        turn = await sync_to_async(turn_log.keyed_turn)(
            turn_input.user, turn_input.idempotency_key, release=True
        )
        if turn is not None:
            return turn
    raise TurnInProgress("This message is still being sent; its answer will appear shortly.")


def _user_id(user: AbstractBaseUser) -> str:
    return getattr(user, "email", "") or user.get_username()


async def _headers(deployment: Deployment) -> dict[str, str]:
    if deployment.auth_kind == AuthKind.DATABRICKS:
        # databricks-sdk may refresh an OAuth token over HTTP: a thread, not the event loop.
        headers = await sync_to_async(auth_headers, thread_sensitive=False)(deployment)
    else:
        headers = auth_headers(deployment)
    if deployment.endpoint_kind == EndpointKind.MLFLOW_AGENT_SERVER:
        headers["x-mlflow-return-trace-id"] = "true"  # protocol.md §1.6
    return headers


async def _schema(deployment: Deployment, call: _Call) -> str:
    """The schema to send in; with `auto` on Databricks, the endpoint's task says (once)."""
    schema = deployment.effective_schema
    if schema != AgentSchema.AUTO or deployment.endpoint_kind != EndpointKind.DATABRICKS:
        return schema
    failed_at = _task_lookup_failed_at.get(deployment.pk)
    if failed_at is not None and time.monotonic() - failed_at < TASK_LOOKUP_RETRY_S:
        return schema
    detail = await get_json(
        _endpoint_detail_url(deployment), headers=call.headers, timeout_s=TASK_LOOKUP_TIMEOUT_S
    )
    task = detail.get("task") if isinstance(detail, dict) else None
    found = schema_for_task(task if isinstance(task, str) else None)
    if found is None:
        _task_lookup_failed_at[deployment.pk] = time.monotonic()
        return schema
    call.detected = found
    return found


def _endpoint_detail_url(deployment: Deployment) -> str:
    """GET /api/2.0/serving-endpoints/{name} on the endpoint's workspace (protocol.md §5.3)."""
    origin = urlsplit(deployment.query_endpoint)
    return f"{origin.scheme}://{origin.netloc}/api/2.0/serving-endpoints/{deployment.endpoint_name}"
