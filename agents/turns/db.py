"""Where a turn's database steps run: the ORM never on the event loop (Django refuses it there),
and no step holding a connection while the agent is thinking.

Under Django's ASGI handler (the chat page) a step runs in the request's own thread, as every
synchronous part of that request does. The API's lean path (agents/lean_chat_api.py) runs
outside Django's handler and sets `pooled_threads`: on PostgreSQL its everyday statements are
awaited on the loop (pg_async.py); its other steps share a few threads, as many as the
database pool has connections, so a thousand turns in flight need neither a thousand
threads nor more connections than the pool. Each step gives its connection back when it ends.
"""

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from reviewapp import pg_loop

T = TypeVar("T")

# The executor of the current turn's database steps; None: the calling request's thread.
pooled_threads: contextvars.ContextVar[ThreadPoolExecutor | None] = contextvars.ContextVar(
    "turn_db_threads", default=None
)
_executor: ThreadPoolExecutor | None = None
# Set by a batch run's lane (evaluation/lanes.py), which owns its threads: their connections
# stay open between steps. A Celery worker has no pool, so each close would cost a new
# connection (bench/README.md, "Batch runs").
holds_connections: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "turn_db_holds_connections", default=False
)


def on_event_loop() -> bool:
    """Whether this turn's everyday statements are awaited on the event loop instead
    (reviewapp/pg_loop.py): the lean path's turns, on PostgreSQL."""
    return pooled_threads.get() is not None and pg_loop.enabled()


def shared_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=settings.TURN_DB_THREADS, thread_name_prefix="turn-db"
        )
    return _executor


async def run_db(step: Callable[..., T], *args, **kwargs) -> T:
    executor = pooled_threads.get()
    if executor is None:
        return await sync_to_async(_released(step))(*args, **kwargs)
    return await sync_to_async(_released(step), thread_sensitive=False, executor=executor)(
        *args, **kwargs
    )


async def run_db_detached(step: Callable[..., T], *args, **kwargs) -> T:
    """For a step after the request is gone (a client that hung up): its thread may be too."""
    executor = pooled_threads.get() or shared_executor()
    return await sync_to_async(_released(step), thread_sensitive=False, executor=executor)(
        *args, **kwargs
    )


def _released(step: Callable[..., T]) -> Callable[..., T]:
    def run(*args, **kwargs) -> T:
        try:
            return step(*args, **kwargs)
        finally:
            release_connections()

    return run


def release_connections() -> None:
    """Give this thread's database connections back (to psycopg's pool under ASGI) between a
    turn's steps, so a turn waiting for its agent holds none. Not inside a transaction (a
    test's)."""
    hold = holds_connections.get()
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            continue
        if hold:
            conn.close_if_unusable_or_obsolete()
        else:
            conn.close()


def close_thread_connections(executor: ThreadPoolExecutor, threads: int) -> None:
    """Close the connections each of the executor's `threads` threads holds (one call per
    thread: each waits at a barrier until all have one)."""
    barrier = threading.Barrier(threads)

    def close() -> None:
        barrier.wait(timeout=30)
        connections.close_all()

    for future in [executor.submit(close) for _ in range(threads)]:
        future.result()
