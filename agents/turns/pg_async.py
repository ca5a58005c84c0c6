"""A turn's everyday statements on psycopg's async driver, awaited on the event loop
(PostgreSQL, the API's lean path): the access stamp, the conversation and its history, a new
conversation, and the save.

Why not the ORM in a thread (agents/turns/db.py): at 50 clients a turn's two steps there
waited for one of the few threads (p50 6 ms, p99 74 ms) and then ran two to three times their
unloaded time fighting the event loop for the GIL, which made most of the latency the app
added (bench/README.md, "the turn's statements on the event loop"). Awaited here, a statement
costs its round trip and nothing else, and a thousand turns in flight share a few connections.

Django's ORM cannot run on an event loop, so the statements are written here; their values
are Django's own (each field's `pre_save` and `get_db_prep_save`, rows read back with
`Model.from_db`), so both drivers write the same rows (tests/chat/test_turn_drivers.py).
What is rare stays on the ORM: a cold or changed access cache, an idempotency key.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property

from django.conf import settings
from django.db import connections, models
from psycopg import AsyncConnection, OperationalError, sql
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from agents.models import AccessStamp, Conversation, Deployment, RequestLog, TurnKey
from agents.turns import record

logger = logging.getLogger(__name__)
APPLICATION_NAME = "reviewapp-turns"
BIG_REPLY_BYTES = 50_000  # a reply this big carries a trace worth normalizing in a thread
# A save waits longer for a connection than a start: the agent has answered, the turn must land.
SAVE_POOL_TIMEOUT_S = 30.0
_pools: dict[asyncio.AbstractEventLoop, AsyncConnectionPool] = {}
_opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def enabled() -> bool:
    return connections["default"].vendor == "postgresql" and settings.TURN_DB_ASYNC


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
    logger.warning("turn %s: a pooled connection failed (%s); replacing dead ones", what, exc)
    pool = _pools.get(asyncio.get_running_loop())
    if pool is not None:
        await pool.check()


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
                # a turn of the loop): a start that meets a dead connection falls back to the
                # ORM (start.py), a save sends its one statement again on another.
                open=False,
                name="turns",
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


# -- reads at a turn's start --------------------------------------------------------------


@dataclass
class StartReads:
    stamp: int
    conversation: Conversation | None
    history: list[dict[str, str]]


async def start_reads(
    conn: AsyncConnection,
    *,
    user_id: int,
    deployment_id: int,
    conversation_id: object,
    history: bool,
) -> StartReads:
    """The access stamp, the user's conversation (None: none of theirs has this id) and its
    history (as agents.conversations.conversation_history), pipelined: one round trip. The
    caller trusts them only if the stamp is the one its cached answers belong to."""
    async with conn.pipeline():
        stamp = await conn.execute(_sql.stamp)
        found = past = None
        if conversation_id:
            found = await conn.execute(_sql.conversation, [conversation_id, user_id, deployment_id])
            if history:
                past = await conn.execute(_sql.history, [conversation_id])
    row = await stamp.fetchone()
    reads = StartReads(stamp=row[0] if row else 0, conversation=None, history=[])
    if found is not None and (row := await found.fetchone()) is not None:
        reads.conversation = Conversation.from_db("default", _sql.conversation_fields, row)
    if past is not None and reads.conversation is not None:
        for request, response in await past.fetchall():
            reads.history += [
                {"role": "user", "content": request},
                {"role": "assistant", "content": response},
            ]
    return reads


async def insert_conversation(conn: AsyncConnection, conversation: Conversation) -> None:
    """As Model.save(force_insert=True)."""
    fields = _sql.conversation_insert_fields
    values = _db_values(fields, conversation, add=True)
    await conn.execute(_sql.conversation_insert, values)
    conversation._state.adding = False
    conversation._state.db = "default"


# -- the save after the call --------------------------------------------------------------


async def save_turn(
    turn: RequestLog, *, conversation: Conversation, key: str, detected_schema: str
) -> RequestLog:
    """As agents.turns.record.save_turn: the row, the conversation's title and inputs, the
    key's link and a detected schema in ONE statement (autocommit, one round trip, one wait
    for the disk). A connection that died (PostgreSQL restarted) is replaced and the
    statement sent once more: it cannot write the turn twice (`_insert_turn`)."""
    if len(turn.response_raw) > BIG_REPLY_BYTES:  # a big trace: normalize it off the loop
        await asyncio.to_thread(record.prepare_save, turn, conversation)
    else:
        record.prepare_save(turn, conversation)
    try:
        await _insert_turn(turn, conversation, key, detected_schema)
    except PoolTimeout:
        raise  # an OperationalError too, but the pool is busy, not dead
    except OperationalError as exc:
        await drop_dead_connections(exc, "save: sending it again")
        await _insert_turn(turn, conversation, key, detected_schema)
    return turn


async def _insert_turn(turn, conversation, key, detected_schema) -> None:
    async with connection(timeout=SAVE_POOL_TIMEOUT_S) as conn:
        await _insert_turn_on(conn, turn, conversation, key, detected_schema)


async def _insert_turn_on(conn, turn, conversation, key, detected_schema) -> None:
    if not record.keeps_agent_request_id(turn):
        record.use_own_request_id(turn)
    turn.pk = await _insert_once(conn, turn, conversation, key, detected_schema)
    if turn.pk is not None:
        return
    # The id is taken: by this very turn (the first send committed before its connection
    # died), or by another turn; then ours, as the ORM's save does.
    cursor = await conn.execute(_sql.own_turn, [turn.databricks_request_id, turn.client_request_id])
    if (row := await cursor.fetchone()) is not None:
        turn.pk = row[0]
        return
    record.use_own_request_id(turn)
    turn.pk = await _insert_once(conn, turn, conversation, key, detected_schema)


async def _insert_once(conn, turn, conversation, key, detected_schema) -> int | None:
    turn_values = _db_values(_sql.turn_insert_fields, turn, add=True)
    touched = _db_values(_sql.touched_fields, conversation, add=False)
    params = [*turn_values, *touched, conversation.pk, turn.user_id, key]
    params += [detected_schema, detected_schema, turn.deployment_id]
    cursor = await conn.execute(_sql.save, params)
    row = await cursor.fetchone()
    if row is None:
        return None
    turn._state.adding = False
    turn._state.db = "default"
    return row[0]


# -- the statements, written once from Django's metadata ----------------------------------


class _Statements:
    """Built on first use (the models must be loaded), as plain SQL strings."""

    @cached_property
    def stamp(self) -> str:
        return _render(
            "SELECT {} FROM {} WHERE {} = 1",
            _col(AccessStamp, "value"),
            _table(AccessStamp),
            _col(AccessStamp, "id"),
        )

    @cached_property
    def conversation_fields(self) -> list[str]:
        return [field.attname for field in Conversation._meta.concrete_fields]

    @cached_property
    def conversation(self) -> str:
        return _render(
            "SELECT {} FROM {} WHERE {} = %s AND {} = %s AND {} = %s",
            _list(f.column for f in Conversation._meta.concrete_fields),
            _table(Conversation),
            *(_col(Conversation, name) for name in ("id", "user", "deployment")),
        )

    @cached_property
    def history(self) -> str:
        return _render(
            "SELECT {}, {} FROM {} WHERE {} = %s AND {} = '' ORDER BY {}",
            *(_col(RequestLog, name) for name in ("request", "response")),
            _table(RequestLog),
            *(_col(RequestLog, name) for name in ("conversation", "error", "created_at")),
        )

    @cached_property
    def conversation_insert_fields(self) -> list[models.Field]:
        return list(Conversation._meta.concrete_fields)

    @cached_property
    def conversation_insert(self) -> str:
        fields = self.conversation_insert_fields
        return _render(
            "INSERT INTO {} ({}) VALUES ({})",
            _table(Conversation),
            _list(f.column for f in fields),
            sql.SQL(", ").join(sql.Placeholder() * len(fields)),
        )

    @cached_property
    def turn_insert_fields(self) -> list[models.Field]:
        return [f for f in RequestLog._meta.concrete_fields if not f.primary_key]

    @cached_property
    def touched_fields(self) -> list[models.Field]:
        return [Conversation._meta.get_field(name) for name in record.CONVERSATION_TOUCHED]

    @cached_property
    def save(self) -> str:
        """Each part runs only when the turn's row went in: a taken request id changes
        nothing. Parameters: the turn's values, the conversation's touched values and id, the
        user and key (no key matches no row), the detected schema ('' matches no row) and the
        deployment."""
        fields, touched = self.turn_insert_fields, self.touched_fields
        return _render(
            "WITH turn AS (INSERT INTO {turns} ({columns}) VALUES ({values}) "
            "ON CONFLICT ({request_id}) DO NOTHING RETURNING {turn_pk}), "
            "touched AS (UPDATE {conversations} SET {touched} WHERE {conversation_pk} = %s "
            "AND EXISTS (SELECT 1 FROM turn)), "
            "keyed AS (UPDATE {keys} SET {key_turn} = (SELECT {turn_pk} FROM turn) "
            "WHERE {key_user} = %s AND {key} = %s AND EXISTS (SELECT 1 FROM turn)), "
            "detected AS (UPDATE {deployments} SET {schema} = %s WHERE %s <> '' "
            "AND {deployment_pk} = %s AND {schema} = '' AND EXISTS (SELECT 1 FROM turn)) "
            "SELECT {turn_pk} FROM turn",
            turns=_table(RequestLog),
            columns=_list(f.column for f in fields),
            values=sql.SQL(", ").join(sql.Placeholder() * len(fields)),
            request_id=_col(RequestLog, "databricks_request_id"),
            turn_pk=_col(RequestLog, "id"),
            conversations=_table(Conversation),
            touched=sql.SQL(", ").join(
                sql.SQL("{} = %s").format(sql.Identifier(f.column)) for f in touched
            ),
            conversation_pk=_col(Conversation, "id"),
            keys=_table(TurnKey),
            key_turn=_col(TurnKey, "turn"),
            key_user=_col(TurnKey, "user"),
            key=_col(TurnKey, "key"),
            deployments=_table(Deployment),
            schema=_col(Deployment, "detected_schema"),
            deployment_pk=_col(Deployment, "id"),
        )

    @cached_property
    def own_turn(self) -> str:
        return _render(
            "SELECT {} FROM {} WHERE {} = %s AND {} = %s",
            _col(RequestLog, "id"),
            _table(RequestLog),
            *(_col(RequestLog, name) for name in ("databricks_request_id", "client_request_id")),
        )


_sql = _Statements()


def _render(template: str, *args, **kwargs) -> str:
    return sql.SQL(template).format(*args, **kwargs).as_string()


def _table(model: type[models.Model]) -> sql.Identifier:
    return sql.Identifier(model._meta.db_table)


def _col(model: type[models.Model], name: str) -> sql.Identifier:
    return sql.Identifier(model._meta.get_field(name).column)


def _list(columns) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(column) for column in columns)


def _db_values(fields: list[models.Field], instance: models.Model, *, add: bool) -> list:
    """What the ORM would send for these fields of the instance (auto_now ones set now)."""
    django_connection = connections["default"]  # its operations adapt values; no query
    return [
        field.get_db_prep_save(field.pre_save(instance, add), django_connection) for field in fields
    ]
