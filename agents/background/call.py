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

from agents.background import collect
from agents.background.protocols import RUNNING, RunProtocol, protocol_for
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
    deployment, turn = started.deployment, started.row
    protocol = protocol_for(deployment.endpoint_kind)
    start, chosen_id = protocol.start_body(body)
    turn.keep_raw("request_raw", json.dumps(start))
    timeout = deployment.request_timeout_s
    accepted = await post_json(deployment.query_endpoint, start, headers=headers, timeout_s=timeout)
    try:
        turn.agent_run_id = protocol.run_id_of(accepted.json, chosen_id)
    except ValueError as exc:
        raise AgentReplyError(str(exc)) from None
    turn.agent_run_state, turn.status_code = "running", accepted.status_code
    turn.execution_time_ms = collect.elapsed_ms(turn)
    turn = await run_db(
        record.save_turn,
        turn,
        conversation=started.conversation,
        key=started.idempotency_key,
        detected_schema="",
    )
    turn.deployment = deployment
    if collect.run_state(deployment.endpoint_kind, accepted) != RUNNING:
        # A server without background runs (a LongRunningAgentServer without its database)
        # answers the POST itself.
        collect.apply_end(turn, deployment.endpoint_kind, accepted)
        yield Ended((await run_db(record.finish_run, turn))[0])
        return
    if stream:
        assembler = collect.adapter_of(deployment.endpoint_kind).assembler()
        try:
            async for event in _follow(protocol, turn, headers, assembler):
                yield event
        except (AgentCallError, AgentReplyError) as exc:
            # The run goes on at the agent whatever happened to its stream: its state says.
            logger.warning("background run %s: stream ended: %s", turn.agent_run_id, exc)
    yield Ended(await _wait_for_end(turn, headers))


async def _follow(
    protocol: RunProtocol, turn, headers: dict[str, str], assembler: StreamAssembler
) -> AsyncIterator[TextDelta | ItemAdded]:
    """The run's events, from the first; a cut stream is asked again after its last event."""
    deployment, position = turn.deployment, 0
    seen: int | None = None
    for _attempt in range(RESUMES + 1):
        url = protocol.events_url(deployment.query_endpoint, turn.agent_run_id, position)
        reader = StreamReader(url, None, headers=headers, timeout_s=deployment.request_timeout_s)
        try:
            async for payload in reader:
                number = protocol.position(reader.last_event_id, payload)
                if number is not None:
                    if seen is not None and number <= seen:
                        continue  # sent again after a resume (`starting_after=0` means all)
                    seen = position = number
                for event in assembler.feed(payload):
                    yield event
            return
        except StreamCut:
            if getattr(assembler, "finished", False):
                return  # the runtime's stream ends after its last event, without [DONE]
            logger.info("background run %s: stream cut after %s; resuming", turn.agent_run_id, seen)


async def _wait_for_end(turn, headers: dict[str, str]):
    """Polls the run's state until it ends or the deployment's timeout passes (then the turn is
    left running: the page's poll and the sweep go on asking)."""
    deadline = time.monotonic() + turn.deployment.request_timeout_s
    while True:
        turn = await collect.refresh(turn)
        if turn.agent_run_state != "running" or time.monotonic() >= deadline:
            return turn
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
