"""A turn's everyday statements on psycopg's async driver, awaited on the event loop
(PostgreSQL, the API's lean path; the pool and the SQL helpers are reviewapp/pg_loop.py's): the
access stamp, the conversation and its history, a new conversation, and the save.

Their values are Django's own, so both drivers write the same rows
(tests/chat/test_turn_drivers.py). What is rare stays on the ORM: a cold or changed access
cache, an idempotency key.
"""

import asyncio
from dataclasses import dataclass
from functools import cached_property

from django.db import models
from psycopg import AsyncConnection, OperationalError, sql
from psycopg_pool import PoolTimeout

from agents import access
from agents.models import Conversation, Deployment, RequestLog, TurnKey
from agents.turns import record
from reviewapp import pg_loop
from reviewapp.pg_loop import col, columns, placeholders, render, table

BIG_REPLY_BYTES = 50_000  # a reply this big carries a trace worth normalizing in a thread
# A save waits longer for a connection than a start: the agent has answered, the turn must land.
SAVE_POOL_TIMEOUT_S = 30.0


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
        stamp = await conn.execute(access.STAMP_SQL)
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
    values = pg_loop.db_values(fields, conversation, add=True)
    await conn.execute(_sql.conversation_insert, values)
    pg_loop.mark_saved(conversation)


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
        await pg_loop.drop_dead_connections(exc, "turn save: sending it again")
        await _insert_turn(turn, conversation, key, detected_schema)
    return turn


async def _insert_turn(turn, conversation, key, detected_schema) -> None:
    async with pg_loop.connection(timeout=SAVE_POOL_TIMEOUT_S) as conn:
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
    turn_values = pg_loop.db_values(_sql.turn_insert_fields, turn, add=True)
    touched = pg_loop.db_values(_sql.touched_fields, conversation, add=False)
    params = [*turn_values, *touched, conversation.pk, turn.user_id, key]
    params += [detected_schema, detected_schema, turn.deployment_id]
    cursor = await conn.execute(_sql.save, params)
    row = await cursor.fetchone()
    if row is None:
        return None
    pg_loop.mark_saved(turn)
    return row[0]


# -- the statements, written once from Django's metadata ----------------------------------


class _Statements:
    """Built on first use (the models must be loaded), as plain SQL strings."""

    @cached_property
    def conversation_fields(self) -> list[str]:
        return [field.attname for field in Conversation._meta.concrete_fields]

    @cached_property
    def conversation(self) -> str:
        return render(
            "SELECT {} FROM {} WHERE {} = %s AND {} = %s AND {} = %s",
            columns(Conversation._meta.concrete_fields),
            table(Conversation),
            *(col(Conversation, name) for name in ("id", "user", "deployment")),
        )

    @cached_property
    def history(self) -> str:
        return render(
            "SELECT {}, {} FROM {} WHERE {} = %s AND {} = '' ORDER BY {}",
            *(col(RequestLog, name) for name in ("request", "response")),
            table(RequestLog),
            *(col(RequestLog, name) for name in ("conversation", "error", "created_at")),
        )

    @cached_property
    def conversation_insert_fields(self) -> list[models.Field]:
        return list(Conversation._meta.concrete_fields)

    @cached_property
    def conversation_insert(self) -> str:
        fields = self.conversation_insert_fields
        return render(
            "INSERT INTO {} ({}) VALUES ({})",
            table(Conversation),
            columns(fields),
            placeholders(len(fields)),
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
        return render(
            "WITH turn AS (INSERT INTO {turns} ({columns}) VALUES ({values}) "
            "ON CONFLICT ({request_id}) DO NOTHING RETURNING {turn_pk}), "
            "touched AS (UPDATE {conversations} SET {touched} WHERE {conversation_pk} = %s "
            "AND EXISTS (SELECT 1 FROM turn)), "
            "keyed AS (UPDATE {keys} SET {key_turn} = (SELECT {turn_pk} FROM turn) "
            "WHERE {key_user} = %s AND {key} = %s AND EXISTS (SELECT 1 FROM turn)), "
            "detected AS (UPDATE {deployments} SET {schema} = %s WHERE %s <> '' "
            "AND {deployment_pk} = %s AND {schema} = '' AND EXISTS (SELECT 1 FROM turn)) "
            "SELECT {turn_pk} FROM turn",
            turns=table(RequestLog),
            columns=columns(fields),
            values=placeholders(len(fields)),
            request_id=col(RequestLog, "databricks_request_id"),
            turn_pk=col(RequestLog, "id"),
            conversations=table(Conversation),
            touched=sql.SQL(", ").join(
                sql.SQL("{} = %s").format(sql.Identifier(f.column)) for f in touched
            ),
            conversation_pk=col(Conversation, "id"),
            keys=table(TurnKey),
            key_turn=col(TurnKey, "turn"),
            key_user=col(TurnKey, "user"),
            key=col(TurnKey, "key"),
            deployments=table(Deployment),
            schema=col(Deployment, "detected_schema"),
            deployment_pk=col(Deployment, "id"),
        )

    @cached_property
    def own_turn(self) -> str:
        return render(
            "SELECT {} FROM {} WHERE {} = %s AND {} = %s",
            col(RequestLog, "id"),
            table(RequestLog),
            *(col(RequestLog, name) for name in ("databricks_request_id", "client_request_id")),
        )


_sql = _Statements()
