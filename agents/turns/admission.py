"""The cap on chat turns in flight in one web process, and what "too busy" is.

Past CHAT_MAX_TURNS_IN_FLIGHT a new turn is refused at once (503 with Retry-After) before
anything is written, instead of queueing until the database pool or the client gives up; so
is a request that finds a database pool empty for DATABASE_POOL_TIMEOUT.
"""

import threading
import weakref

from django.conf import settings
from django.db import OperationalError
from psycopg_pool import PoolTimeout

RETRY_AFTER_S = 2


DATABASE_BUSY = (
    "The database is busy with as many messages as it may carry; nothing was sent. "
    f"Try again in {RETRY_AFTER_S} s."
)


def pool_exhausted(exc: BaseException) -> bool:
    """A PostgreSQL pool stayed empty for DATABASE_POOL_TIMEOUT: psycopg's PoolTimeout, as
    Django wraps it or (agents/turns/pg_async.py) as it is."""
    return isinstance(exc, PoolTimeout) or (
        isinstance(exc, OperationalError) and isinstance(exc.__cause__, PoolTimeout)
    )


class Overloaded(Exception):
    """Refused: the process already carries as many turns as it was configured for."""

    retry_after_s = RETRY_AFTER_S

    def __init__(self, message: str = ""):
        super().__init__(
            message
            or "The app is busy with as many messages as it may carry; nothing was sent. "
            f"Try again in {RETRY_AFTER_S} s."
        )


_in_flight = 0
_lock = threading.Lock()  # turns are admitted on event loops, released maybe by the collector


def in_flight() -> int:
    return _in_flight


class Slot:
    """One admitted turn; `release()` (idempotent) frees it, and so does garbage collection if
    a caller dropped it without running the turn (a client gone before its stream started)."""

    def __init__(self) -> None:
        self._finalizer = weakref.finalize(self, _release_one)

    def release(self) -> None:
        self._finalizer()


def admit() -> Slot:
    global _in_flight
    with _lock:
        if _in_flight >= settings.CHAT_MAX_TURNS_IN_FLIGHT:
            raise Overloaded()
        _in_flight += 1
    return Slot()


def _release_one() -> None:
    global _in_flight
    with _lock:
        _in_flight -= 1
