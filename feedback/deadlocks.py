"""A save tried again when PostgreSQL ended it as a deadlock's victim."""

import functools
import logging

from django.db import OperationalError, transaction
from psycopg import errors as psycopg_errors

logger = logging.getLogger(__name__)

DEADLOCK_ATTEMPTS = 3


def retried_on_deadlock(save):
    """Run `save` (a transaction of its own) again when PostgreSQL ended it as a deadlock's
    victim. The API's save on the event loop (rating_on_loop.py) takes no turn lock, so a
    version saved there at the same moment as one saved here can deadlock with it; PostgreSQL
    then rolls one back whole, and this one is simply tried again. Inside a caller's own
    transaction it is not retried (that transaction is aborted): the error goes up."""

    @functools.wraps(save)
    def run(*args, **kwargs):
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                return save(*args, **kwargs)
            except OperationalError as exc:
                deadlock = isinstance(exc.__cause__, psycopg_errors.DeadlockDetected)
                if not deadlock or attempt == DEADLOCK_ATTEMPTS or _in_transaction():
                    raise
                logger.warning("rating save was a deadlock's victim; trying again (%s)", attempt)
        raise AssertionError("unreachable")

    return run


def _in_transaction() -> bool:
    return transaction.get_connection().in_atomic_block
