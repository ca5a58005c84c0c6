"""A lane: one Celery task working a run's rows, up to `width` at once on an event loop.

It claims rows (a lease it renews while it works, so a claim whose lease ran out is a dead
worker's and another lane takes it), sends each as a chat turn through the turn service, or
scores it with the run's evaluators, and marks it done. Each row's turn carries the key
`run-<run>-<position>` as its client request id: a row taken back after its worker died gets
the turn that worker saved, if it saved one, so the request log holds one turn per row. (Not
the chat's idempotency keys: claiming one takes the turn off its fast start on the event loop,
bench/README.md "Batch runs".)

A lane works for at most RUN_LANE_SECONDS, then hands over to a new task (so the worker is
free for other tasks in between, and a long run needs no long task); it stops when the run has
no row left to answer, or was cancelled.
"""

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

import uvloop
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.http import Http404
from django.utils import timezone

from agents.client import close_http_client, serving_loop
from agents.models import RequestLog
from agents.turns import Overloaded, send_turn, turn_start
from agents.turns import db as turn_db
from agents.turns.start import UNSET
from evaluation import evaluators, mapping, runs
from evaluation.models import RowStatus, Run, RunKind, RunRow, RunStatus
from feedback.services import evaluator_rating_create
from reviewapp import pg_loop

logger = logging.getLogger(__name__)
HOST = socket.gethostname()
UNANSWERED = [RowStatus.PENDING, RowStatus.CLAIMED]


@dataclass
class Claimed:
    rows: list[RunRow] = field(default_factory=list)
    running: bool = True
    left: bool = True  # rows not done (claimed by others, maybe)


@dataclass(frozen=True)
class Answered:
    """A batch row's outcome, marked done with the lane's next claim."""

    row_id: int
    turn_id: int | None
    error: str


def lane_run(run_id: int, width: int) -> bool:
    """Work the run's rows; True when the run has rows left and the lane should hand over."""
    # uvloop, as uvicorn serves the chat: a lane is an event loop as busy as a web process's.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_lane_with_resources(run_id, width))


async def _lane_with_resources(run_id: int, width: int) -> bool:
    # The lane's database steps run in threads of its own, which keep their connections
    # between steps; its turns share one agent session. All are closed when the lane ends.
    threads = settings.TURN_DB_THREADS
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lane-db")
    executor_token = turn_db.pooled_threads.set(executor)
    hold_token = turn_db.holds_connections.set(True)
    serving_loop()
    try:
        return await _lane(run_id, width)
    finally:
        turn_db.holds_connections.reset(hold_token)
        turn_db.pooled_threads.reset(executor_token)
        await close_http_client()
        await pg_loop.close_pool()
        await asyncio.to_thread(turn_db.close_thread_connections, executor, threads)
        executor.shutdown()


async def _lane(run_id: int, width: int) -> bool:
    run = await turn_db.run_db(
        lambda: Run.objects.select_related("created_by").filter(pk=run_id).first()
    )
    if run is None or run.status != RunStatus.RUNNING:
        return False
    if run.created_by is None:  # its rows were its creator's turns
        logger.warning("run %s: its creator was deleted; it is cancelled", run.name)
        await turn_db.run_db(lambda: runs.run_cancel(run))
        return False
    claim = uuid.uuid4()
    deadline = time.monotonic() + settings.RUN_LANE_SECONDS
    beat_every = settings.RUN_LEASE_SECONDS / 3
    next_beat = time.monotonic() + beat_every
    in_flight: dict[asyncio.Task, RunRow] = {}
    # Rows claimed ahead (half a lane), so a row that ends makes room for the next at once,
    # without waiting for a claim's commit.
    queue: deque[RunRow] = deque()
    answered: list[Answered] = []
    state, stopping = Claimed(), False
    while True:
        while queue and len(in_flight) < width and not stopping:  # before any wait
            _start(run, queue.popleft(), claim, in_flight)
        wanted = 0 if stopping else width + width // 2 - len(in_flight) - len(queue)
        if answered or wanted >= max(1, width // 4) or not (in_flight or queue):
            # The rows answered meanwhile are marked done, and more claimed, in one commit.
            state = await turn_db.run_db(_settle, run_id, answered, max(wanted, 0), claim)
            answered = []
            queue.extend(state.rows)
            stopping = stopping or not state.running or time.monotonic() > deadline
        if stopping and queue:  # cancelled, or the lane's time is up: others take them now
            await turn_db.run_db(_release, [row.pk for row in queue], claim)
            queue.clear()
        while queue and len(in_flight) < width:
            _start(run, queue.popleft(), claim, in_flight)
        if not in_flight:
            if stopping:
                return state.running  # hand over, unless the run was cancelled
            if not state.left:
                await turn_db.run_db(_complete, run_id)
                return False
            await asyncio.sleep(1)  # other lanes' rows: wait for them to end or expire
            next_beat = await _beat_if_due(run_id, claim, next_beat, beat_every)
            continue
        done, _ = await asyncio.wait(
            in_flight, timeout=beat_every, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            row = in_flight.pop(task)
            if task.exception() is not None:  # a bug, not the agent: the row ends with it
                logger.error("run %s row %s failed", run_id, row.position,
                             exc_info=task.exception())  # fmt: skip
                answered.append(Answered(row.pk, None, f"Internal error: {task.exception()!r}"))
            elif task.result() is not None:
                answered.append(task.result())
        next_beat = await _beat_if_due(run_id, claim, next_beat, beat_every)
        if time.monotonic() > deadline:
            stopping = True


def _start(run: Run, row: RunRow, claim: uuid.UUID, in_flight: dict) -> None:
    in_flight[asyncio.create_task(_work(run, row, claim))] = row


async def _beat_if_due(run_id: int, claim: uuid.UUID, next_beat: float, every: float) -> float:
    if time.monotonic() < next_beat:
        return next_beat
    await turn_db.run_db(_beat, run_id, claim)
    return time.monotonic() + every


def _lease_end():
    return timezone.now() + timedelta(seconds=settings.RUN_LEASE_SECONDS)


def _beat(run_id: int, claim: uuid.UUID) -> None:
    """Keep this lane's claims, and tell the sweeper the run has a live lane."""
    RunRow.objects.filter(run_id=run_id, claim=claim, status=RowStatus.CLAIMED).update(
        lease_until=_lease_end()
    )
    Run.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())


@transaction.atomic
def _settle(run_id: int, answered: list[Answered], count: int, claim: uuid.UUID) -> Claimed:
    """Mark the answered rows done, then claim up to `count` more, in one transaction."""
    for one in answered:
        _finish(one.row_id, claim, turn_id=one.turn_id, error=one.error)
    if count == 0:
        return Claimed(left=True)
    return _claim(run_id, count, claim)


def _claim(run_id: int, count: int, claim: uuid.UUID) -> Claimed:
    """Up to `count` rows: first those whose lease ran out (a dead worker's), then pending
    ones in order. Each read walks the index (run, status, position): a claim costs the rows it
    takes, not the run's size."""
    status = Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
    if status != RunStatus.RUNNING:
        return Claimed(running=False)
    rows = RunRow.objects.filter(run_id=run_id)
    expired = Q(status=RowStatus.CLAIMED, lease_until__lt=timezone.now())
    with transaction.atomic():
        lockable = rows.select_for_update(skip_locked=True).order_by("position")
        ids = list(lockable.filter(expired).values_list("pk", flat=True)[:count])
        if len(ids) < count:
            pending = lockable.filter(status=RowStatus.PENDING)
            ids += pending.values_list("pk", flat=True)[: count - len(ids)]
        if ids:
            rows.filter(expired | Q(status=RowStatus.PENDING), pk__in=ids).update(
                status=RowStatus.CLAIMED,
                claim=claim,
                lease_until=_lease_end(),
                worker=f"{HOST}:{os.getpid()}",  # the pool process, not its parent
                attempts=F("attempts") + 1,
            )
    taken = list(
        rows.filter(pk__in=ids, claim=claim, status=RowStatus.CLAIMED)
        .select_related("dataset_row", "turn")
        .order_by("position")
    )
    left = bool(taken) or rows.filter(status__in=UNANSWERED).exists()
    return Claimed(rows=taken, left=left)


def _complete(run_id: int) -> None:
    if not RunRow.objects.filter(run_id=run_id, status__in=UNANSWERED).exists():
        Run.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
            status=RunStatus.COMPLETED, finished_at=timezone.now()
        )


async def _work(run: Run, row: RunRow, claim: uuid.UUID) -> Answered | None:
    if run.kind == RunKind.BATCH:
        return await _send_row(run, row, claim)
    await _score_row(run, row, claim)  # saves its scores and ratings itself
    return None


def _row_key(run: Run, row: RunRow, suffix: str = "") -> str:
    return f"run-{run.pk}-{row.position}{suffix}"


async def _turn(run: Run, row: RunRow, deployment_id: int, inputs, key: str):
    """The row's turn: the one its first worker saved, when that worker died after saving it
    (found by its key, kept as the turn's client request id), else a new one."""
    if row.attempts > 1:
        earlier = await turn_db.run_db(_turn_of_key, deployment_id, key, run.created_at)
        if earlier is not None:
            return earlier
    started = await turn_start(
        user=run.created_by,
        deployment_id=deployment_id,
        message=inputs.message,
        custom_inputs=UNSET if inputs.custom_inputs is None else inputs.custom_inputs,
        history=inputs.history,
    )
    started.row.client_request_id = key
    started.row.request_metadata.update(run=run.name, run_row=str(row.position))
    return await send_turn(started)


def _turn_of_key(deployment_id: int, key: str, since) -> RequestLog | None:
    # The deployment's turns since the run began (an index range), not the whole log.
    return RequestLog.objects.filter(
        deployment_id=deployment_id, created_at__gte=since, client_request_id=key
    ).first()


async def _send_row(run: Run, row: RunRow, claim: uuid.UUID) -> Answered | None:
    """The row's answer, to be marked done; None when it goes back to be sent later."""
    try:
        inputs = mapping.turn_inputs(run.column_mapping, mapping.Sources(row.dataset_row.data))
        turn = await _turn(run, row, run.deployment_id, inputs, _row_key(run, row))
    except Overloaded:
        await turn_db.run_db(_release, [row.pk], claim)
        return None
    except (ValidationError, PermissionDenied, Http404) as exc:
        return Answered(row.pk, None, _why(exc))
    return Answered(row.pk, turn.pk, turn.error)


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    return str(exc) or type(exc).__name__


def _release(row_ids: list[int], claim: uuid.UUID) -> None:
    RunRow.objects.filter(pk__in=row_ids, claim=claim).update(
        status=RowStatus.PENDING, claim=None, lease_until=None
    )


def _finish(row_id: int, claim: uuid.UUID, *, turn_id: int | None = None, error: str = "") -> bool:
    """Mark the row done, if it is still this lane's."""
    fields = dict(status=RowStatus.DONE, error=error, done_at=timezone.now(), lease_until=None)
    if turn_id is not None:
        fields["turn_id"] = turn_id
    return bool(RunRow.objects.filter(pk=row_id, claim=claim).update(**fields))


async def _score_row(run: Run, row: RunRow, claim: uuid.UUID) -> None:
    ctx = evaluators.RowContext(data=row.dataset_row.data, turn=row.turn)
    scores = {}
    for index, spec in enumerate(run.evaluators):
        if spec["type"] == evaluators.JUDGE:
            scores[spec["name"]] = await _judge(run, row, spec, index, ctx)
        else:
            try:
                scores[spec["name"]] = evaluators.builtin_score(spec, ctx)
            except Exception as exc:  # a bug or an odd row must not stop the run
                logger.exception("run %s row %s: evaluator %s", run.pk, row.position, spec)
                scores[spec["name"]] = {"error": f"{type(exc).__name__}: {exc}"}
    await turn_db.run_db(_save_scores, run, row, claim, scores)


async def _judge(run: Run, row: RunRow, spec: dict, index: int, ctx) -> dict:
    if ctx.turn is None:
        return {"skipped": "the row has no answer to judge"}
    try:
        inputs = mapping.turn_inputs(spec["column_mapping"], ctx.sources)
        turn = await _turn(run, row, spec["deployment_id"], inputs, _row_key(run, row, f"-{index}"))
    except Overloaded as exc:
        return {"error": f"The judge was busy: {exc}"}
    except (ValidationError, PermissionDenied, Http404) as exc:
        return {"error": _why(exc)}
    if turn.error:
        result = {"error": f"The judge failed: {turn.error}"}
    else:
        result = evaluators.judge_result(turn.response)
    return {**result, "judge_request_id": turn.databricks_request_id}


@transaction.atomic
def _save_scores(run: Run, row: RunRow, claim: uuid.UUID, scores: dict) -> None:
    """The row's scores, and each score as a rating of the answer (forwarded like a
    reviewer's), in one transaction: all of them, or, when the row is no longer this lane's,
    none."""
    if not _finish(row.pk, claim):
        return
    RunRow.objects.filter(pk=row.pk).update(scores=scores)
    if row.turn is None:
        return
    for spec in run.evaluators:
        result = scores[spec["name"]]
        if "value" not in result:
            continue
        evaluator_rating_create(
            turn=row.turn,
            source_type=evaluators.source_type(spec),
            source_id=f"run:{run.name}/{spec['name']}",
            name=spec["name"],
            value=result["value"],
            rationale=result.get("rationale", ""),
        )
