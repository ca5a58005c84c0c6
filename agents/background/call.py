"""A turn answered in the background, as the turn's request sees it: start the run, save the
turn with its run id at once, show the run's events as they come (asking again after the last
one when the stream is cut), then read the run's end and finish the turn.

If the page is closed or this process stops meanwhile, the turn stays `running` in the request
log, and the page's poll or the Celery sweep finishes it (agents.background.collect).
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

from django.conf import settings
from django.utils import timezone

from agents.background import collect
from agents.background.protocols import RUNNING, RunProtocol, checked_run_id, protocol_for
from agents.client import AgentCallError, StreamCut, StreamReader, post_json
from agents.schemas import AgentReplyError, ItemAdded, TextDelta
from agents.schemas.base import StreamAssembler
from agents.turns import record
from agents.turns.db import run_db
from agents.turns.start import StartedTurn

logger = logging.getLogger(__name__)
POLL_S = 0.5
RESUMES = 5  # a stream cut more often than this in one turn is left to the poll


class Ended:
    """The last event of a background turn: its row, running or finished."""

    def __init__(self, turn):
        self.turn = turn


async def run_in_background(
    started: StartedTurn, *, headers: dict[str, str], body: dict, stream: bool
) -> AsyncIterator[TextDelta | ItemAdded | Ended]:
    turn = started.row
    protocol = protocol_for(started.deployment.endpoint_kind)
    start, chosen_id = protocol.start_body(body, stream=stream, key=_run_key(started))
    turn.keep_raw("request_raw", json.dumps(start))
    follower = _Follower(protocol, turn, headers)
    if chosen_id:
        steps = _start_named(started, follower, start, chosen_id, stream=stream)
    elif stream and protocol.streams_from_start:
        steps = _start_streamed(started, follower, start)
    else:
        steps = _start_answered_with_id(started, follower, start)
    async for event in steps:
        yield event
        if isinstance(event, Ended):
            return
    if follower.trace_id:  # a stream's trace id, which the run's final state may leave out
        await run_db(record.keep_trace_id, follower.turn.pk, follower.trace_id)
    yield Ended(await _wait_for_end(follower.turn, headers, follower.trace_id))


async def _start_named(started: StartedTurn, follower, start: dict, run_id: str, *, stream: bool):
    """Agent Runtime: the app names the run, so the turn is saved with it before the run is
    started; a turn whose start failed is finished with the reason."""
    deployment = started.deployment
    turn = follower.turn = await _save_running(started, run_id, 202)
    try:
        accepted = await post_json(
            deployment.query_endpoint,
            start,
            headers=follower.headers,
            timeout_s=deployment.request_timeout_s,
        )
    except AgentCallError as exc:
        turn.fail(exc.message, exc.detail, exc.status_code)
        turn.keep_raw("response_raw", exc.raw)
        turn.execution_time_ms = collect.elapsed_ms(turn)
        yield Ended((await run_db(record.finish_run, turn))[0])
        return
    if collect.run_state(deployment.endpoint_kind, accepted) != RUNNING:
        collect.apply_end(turn, deployment.endpoint_kind, accepted)
        yield Ended((await run_db(record.finish_run, turn))[0])
        return
    if stream:
        async for event in follower.follow(None):
            yield event


async def _start_streamed(started: StartedTurn, follower, start: dict):
    """LongRunningAgentServer, streamed: the POST answers with the run's events, each naming
    the run; the turn is saved with the first. Until it comes, nothing is known to resume, so
    the first event is awaited as long as a run may last."""
    deployment = started.deployment
    opening = StreamReader(
        deployment.query_endpoint,
        start,
        headers=follower.headers,
        timeout_s=max(deployment.request_timeout_s, settings.BACKGROUND_RUN_MAX_SECONDS),
    )
    async for event in follower.follow(opening):
        if isinstance(event, RunKnown):
            follower.turn = await _save_running(started, event.run_id, 200)
        else:
            yield event
    if not follower.turn.agent_run_id:
        # No run: a server without background runs (no database) streamed a plain answer.
        turn = follower.turn
        turn.apply_reply(follower.assembler.reply(), 200)
        turn.keep_raw("response_raw", opening.raw)
        turn.execution_time_ms = collect.elapsed_ms(turn)
        yield Ended(await run_db(record.save_turn, turn, **_save_args(started)))


async def _start_answered_with_id(started: StartedTurn, follower, start: dict):
    """LongRunningAgentServer, polled: the POST answers with the run's id (or, from a server
    without background runs, with the answer itself)."""
    deployment, turn = started.deployment, started.row
    accepted = await post_json(
        deployment.query_endpoint,
        start,
        headers=follower.headers,
        timeout_s=deployment.request_timeout_s,
    )
    try:
        run_id = follower.protocol.accepted_run_id(accepted.json)
    except ValueError:
        turn.keep_raw("response_raw", accepted.text)
        turn.apply_reply(
            collect.adapter_of(deployment.endpoint_kind).parse_reply(accepted.json), 200
        )
        turn.execution_time_ms = collect.elapsed_ms(turn)
        yield Ended(await run_db(record.save_turn, turn, **_save_args(started)))
        return
    follower.turn = await _save_running(started, run_id, accepted.status_code)


class RunKnown:
    def __init__(self, run_id: str):
        self.run_id = run_id


class _Follower:
    """Reads a run's events, from the first; a cut stream is asked again after its last event,
    and an event sent again is dropped. Errors of the stream end the following, not the run:
    its state says how it ended."""

    def __init__(self, protocol: RunProtocol, turn, headers: dict[str, str]):
        self.protocol, self.turn, self.headers = protocol, turn, headers
        self.assembler: StreamAssembler = collect.adapter_of(protocol.kind).assembler()
        self.position, self.seen = 0, None

    @property
    def trace_id(self) -> str:
        return self.assembler.facts.trace_id or ""

    async def follow(self, opening: StreamReader | None) -> AsyncIterator:
        deployment = self.turn.deployment
        reader = opening
        for _attempt in range(RESUMES + 1):
            if reader is None:
                url = self.protocol.events_url(
                    deployment.query_endpoint, self.turn.agent_run_id, self.position
                )
                reader = StreamReader(
                    url, None, headers=self.headers, timeout_s=deployment.request_timeout_s
                )
            try:
                async for payload in reader:
                    for event in self._take(reader, payload):
                        yield event
                return
            except StreamCut as exc:
                if getattr(self.assembler, "finished", False):
                    return  # the runtime's stream ends after its last event, without [DONE]
                if not self.turn.agent_run_id:
                    raise  # cut before the run said its id: nothing to resume
                logger.info("background run: stream cut after %s; resuming (%s)", self.seen, exc)
            except (AgentCallError, AgentReplyError) as exc:
                if not self.turn.agent_run_id:
                    raise
                logger.warning("background run: stream ended: %s", exc)
                return
            reader = None

    def _take(self, reader: StreamReader, payload) -> list:
        events: list = []
        if not self.turn.agent_run_id and isinstance(payload, dict):
            run_id = payload.get("response_id")
            if run_id is not None:
                try:
                    self.turn.agent_run_id = checked_run_id(run_id)
                except ValueError as exc:
                    raise AgentReplyError(str(exc)) from None
                events.append(RunKnown(run_id))
        number = self.protocol.position(reader.last_event_id, payload)
        if number is not None:
            if self.seen is not None and number <= self.seen:
                return events  # sent again after a resume (`starting_after=0` means all)
            self.seen = self.position = number
        return events + self.assembler.feed(payload)


async def _save_running(started: StartedTurn, run_id: str, status_code: int):
    """The turn saved with its run the moment the agent accepted it."""
    turn = started.row
    turn.agent_run_id, turn.agent_run_state, turn.status_code = run_id, "running", status_code
    turn.execution_time_ms = collect.elapsed_ms(turn)
    # The sweep leaves it to this request for a while: it is following the run.
    turn.agent_run_checked_at = timezone.now()
    turn = await run_db(record.save_turn, turn, **_save_args(started))
    turn.deployment = started.deployment
    return turn


def _run_key(started: StartedTurn) -> str:
    """What names a run the app chooses: the turn's idempotency key, so a send tried again
    after its process died names the same run, which the runtime then does not start twice."""
    key = started.idempotency_key
    return f"{started.user.pk}:{key}" if key else ""


def _save_args(started: StartedTurn) -> dict:
    return dict(conversation=started.conversation, key=started.idempotency_key, detected_schema="")


async def _wait_for_end(turn, headers: dict[str, str], trace_id: str):
    """Polls the run's state until it ends or the deployment's timeout passes (then the turn is
    left running: the page's poll and the sweep go on asking). `trace_id`: one the stream
    carried, for a server whose final state leaves it out."""
    deadline = time.monotonic() + turn.deployment.request_timeout_s
    while True:
        turn = await collect.refresh(turn, trace_id=trace_id)
        if turn.agent_run_state != "running" or time.monotonic() >= deadline:
            return turn
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
