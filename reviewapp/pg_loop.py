"""Statements awaited on the event loop with psycopg's async driver (PostgreSQL, the API's lean
paths: a chat turn, agents/turns/pg_async.py, and a rating, feedback/rating_on_loop.py): one
pool per event loop, and the helpers that write SQL from Django's model metadata.

Why not the ORM in a thread: under load each ORM step first waited for one of a few threads and
then ran two to three times its unloaded time fighting the event loop for the GIL
(bench/README.md, "the turn's statements on the event loop"). Awaited here, a statement costs
its round trip and nothing else, and a thousand requests in flight share a few connections.

Django's ORM cannot run on an event loop, so these statements are written by hand; their values
are Django's own (each field's `pre_save` and `get_db_prep_save`, rows read back with
`Model.from_db`), and tests run each path through both drivers and compare the rows.
"""

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from django.conf import settings
from django.db import connections, models
from psycopg import AsyncConnection, OperationalError, sql
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

logger = logging.getLogger(__name__)
APPLICATION_NAME = "reviewapp-async"
_pools: dict[asyncio.AbstractEventLoop, AsyncConnectionPool] = {}
_opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def enabled() -> bool:
    return settings.API_DB_ASYNC and _on_postgresql()


@functools.cache
def _on_postgresql() -> bool:
    # Asked on every lean request; `connections[...]` costs a thread-local lookup each time.
    return connections["default"].vendor == "postgresql"


@asynccontextmanager
async def connection(timeout: float | None = None) -> AsyncIterator[AsyncConnection]:
    """A connection of this event loop's pool, in autocommit. PoolTimeout when the pool stays
    empty for DATABASE_POOL_TIMEOUT seconds (or `timeout`)."""
    pool = await _pool()
    async with pool.connection(timeout=timeout) as conn:
        yield conn


async def drop_dead_connections(exc: OperationalError, what: str) -> None:
    """After a statement met a dead connection (PostgreSQL restarted): test the idle ones and
    replace those that are dead too, so the next statements get live ones."""
    logger.warning("%s: a pooled connection failed (%s); replacing dead ones", what, exc)
    pool = _pools.get(asyncio.get_running_loop())
    if pool is not None:
        await pool.check()


def loop_pool() -> AsyncConnectionPool | None:
    """This loop's pool, if it was opened (tests read its statistics)."""
    return _pools.get(asyncio.get_running_loop())


async def close_pool() -> None:
    """Close this loop's pool (a test's server, before its loop ends)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    _opening.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()


async def _pool() -> AsyncConnectionPool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is not None:
        return pool
    async with _opening.setdefault(loop, asyncio.Lock()):
        pool = _pools.get(loop)
        if pool is None:
            pool = AsyncConnectionPool(
                kwargs=_connect_kwargs(),
                min_size=1,
                max_size=settings.DATABASE_POOL_SIZE,
                timeout=settings.DATABASE_POOL_TIMEOUT,
                # No check query on each checkout (a round trip, and on a busy loop each costs
                # a turn of the loop): a caller that meets a dead connection falls back to the
                # ORM or sends its statement again on another (drop_dead_connections).
                open=False,
                name="async",
            )
            await pool.open()
            _pools[loop] = pool
    return pool


def _connect_kwargs() -> dict:
    """The connection Django makes (its settings as the test runner left them, test database
    included), in autocommit and UTC like Django's."""
    db = connections["default"].settings_dict
    given = {
        "dbname": db["NAME"],
        "user": db["USER"],
        "password": db["PASSWORD"],
        "host": db["HOST"],
        "port": db["PORT"],
    }
    kwargs = {name: value for name, value in given.items() if value}
    for name, value in db.get("OPTIONS", {}).items():
        if name not in ("pool", "server_side_binding", "assume_role", "isolation_level"):
            kwargs[name] = value
    kwargs.update(autocommit=True, options="-c TimeZone=UTC", row_factory=tuple_row)
    kwargs["application_name"] = APPLICATION_NAME  # pg_stat_activity tells these apart
    return kwargs


# -- SQL from Django's metadata -------------------------------------------------------------


def render(template: str, *args, **kwargs) -> str:
    """`template` with psycopg.sql parts filled in, as a plain string (built once per
    statement, then reused)."""
    return sql.SQL(template).format(*args, **kwargs).as_string()


def table(model: type[models.Model]) -> sql.Identifier:
    return sql.Identifier(model._meta.db_table)


def col(model: type[models.Model], name: str) -> sql.Identifier:
    return sql.Identifier(model._meta.get_field(name).column)


def columns(fields: Iterable[models.Field], of: str = "") -> sql.Composed:
    """The fields' columns, each `of` an alias when given."""
    names = ((of, field.column) if of else (field.column,) for field in fields)
    return sql.SQL(", ").join(sql.Identifier(*name) for name in names)


def placeholders(count: int) -> sql.Composed:
    return sql.SQL(", ").join(sql.Placeholder() * count)


def concrete_fields(model: type[models.Model], *, with_pk: bool = True) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if with_pk or not f.primary_key]


def db_values(fields: list[models.Field], instance: models.Model, *, add: bool) -> list:
    """What the ORM would send for these fields of the instance (auto_now ones set now)."""
    django_connection = connections["default"]  # its operations adapt values; no query
    return [
        field.get_db_prep_save(field.pre_save(instance, add), django_connection) for field in fields
    ]


def mark_saved(instance: models.Model) -> None:
    """As the ORM leaves an instance it inserted."""
    instance._state.adding = False
    instance._state.db = "default"
