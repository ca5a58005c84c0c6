"""The rating POST's everyday case, awaited on the event loop (PostgreSQL, the API's lean path
feedback/lean_rating_api.py; the pool and the SQL helpers are reviewapp/pg_loop.py's).

`rating_create_on_loop` is `services.rating_create` for a token's reviewer in two round trips:
one read (the access stamp, the turn and its outline's documents; the deployment's label
schemas pipelined with it) and one statement (retire the current version, supersede its unsent
delivery, insert the rating and its delivery). The checks and the cleaning are the
service's own (`services.rating_clean`, the access cache's answers); the rows are the same
(tests/feedback/test_rating_drivers.py).

Only a rating that will be saved is answered here. Anything the ORM path would refuse, and
anything this process cannot answer from memory (a cold or changed access cache, an outline to
be made again, a dead or busy connection), returns None before anything is written, and the
request goes to Django's view: its errors are the API's own, written once.
"""

import logging
from dataclasses import dataclass
from functools import cached_property

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from psycopg import AsyncConnection, IntegrityError, OperationalError, sql
from psycopg_pool import PoolTimeout

from agents import access
from agents.models import Deployment, FeedbackSink, RequestLog
from agents.trace_outline import OUTLINE_VERSION
from feedback import services
from feedback.label_values import DEFAULT_SCHEMA, label_set
from feedback.models import Delivery, DeliveryStatus, DeploymentLabelSchema, LabelSchema, Rating
from feedback.publishing import publisher
from reviewapp import pg_loop, roles
from reviewapp.people import public_id
from reviewapp.pg_loop import col, columns, placeholders, render, table

logger = logging.getLogger(__name__)


@dataclass
class _Reads:
    stamp: int
    turn: RequestLog | None
    outline_version: object
    documents: dict | None
    schemas: list[LabelSchema] | None


async def rating_create_on_loop(
    token: str, request_id: str, *, text_assessments=None, retrieval_assessments=None
) -> Rating | None:
    """The token's user's new current rating of the turn, saved, its delivery's task handed to
    the publisher; or None, with nothing written, when Django's view must answer."""
    user = access.known_user(token)
    if user is access.NOT_KNOWN or user is None or not roles.can_review(user):
        return None
    wants_text = text_assessments not in (None, [])
    wants_documents = retrieval_assessments not in (None, [])
    try:
        async with pg_loop.connection() as conn:
            reads = await _read(conn, request_id, schemas=wants_text)
            turn = _ratable_turn(user, reads)
            if turn is None or (wants_documents and reads.outline_version != OUTLINE_VERSION):
                return None
            try:
                text, documents = services.rating_clean(
                    text_assessments,
                    retrieval_assessments,
                    schemas=reads.schemas or [],
                    documents=reads.documents,
                )
            except ValidationError:
                return None
            rating = _new_rating(turn, user, text, documents)
            await _save(conn, rating, user)
    except IntegrityError:  # a version saved meanwhile (see _save), or the turn deleted
        return None
    except OperationalError as exc:  # a dead connection, or none free (PoolTimeout)
        if not isinstance(exc, PoolTimeout):
            await pg_loop.drop_dead_connections(exc, "rating: through Django instead")
        return None
    for delivery in rating.saved_deliveries:
        publisher.submit(delivery.pk)
    return rating


def _ratable_turn(user: AbstractBaseUser, reads: _Reads) -> RequestLog | None:
    """The turn with its deployment, if the access cache is current and says the user may rate
    it (as services.turn_to_rate and check_can_rate); else None."""
    turn = reads.turn
    running = turn is not None and turn.agent_run_state == "running"
    if turn is None or not access.follows(reads.stamp) or turn.error or running:
        return None  # the view refuses it with the reason
    try:
        deployment = access.known_chat_deployment(user, turn.deployment_id)
    except (PermissionDenied, Http404):
        return None
    if not isinstance(deployment, Deployment) or not deployment.enabled:
        return None
    turn.deployment = deployment
    return turn


def _new_rating(turn: RequestLog, user, text: dict, documents: list[dict]) -> Rating:
    rating = Rating(
        request=turn,
        deployment=turn.deployment,
        reviewer=user,
        source_id=public_id(user),
        text_assessment=text,
        retrieval_assessments=documents,
    )
    sink = turn.deployment.effective_feedback_sink
    no_sink = sink == FeedbackSink.NONE
    rating.saved_deliveries = [] if no_sink else [services.unsent_delivery(turn.deployment, sink)]
    return rating


async def _read(conn: AsyncConnection, request_id: str, *, schemas: bool) -> _Reads:
    """The access stamp and the turn in one statement; the label schemas, when a text
    assessment is to be checked, pipelined with it (one round trip either way)."""
    if schemas:
        async with conn.pipeline():
            turn = await conn.execute(_sql.turn, [request_id])
            found = await conn.execute(_sql.schemas, [request_id, DEFAULT_SCHEMA["name"]])
    else:
        turn, found = await conn.execute(_sql.turn, [request_id]), None
    reads = _Reads(stamp=0, turn=None, outline_version=None, documents=None, schemas=None)
    if (row := await turn.fetchone()) is not None:
        reads.stamp, *values, reads.outline_version, reads.documents = row
        reads.turn = RequestLog.from_db("default", _sql.turn_fields, values)
    if found is not None:
        own, stored_default = [], None
        for *values, set_of in await found.fetchall():
            schema = LabelSchema.from_db("default", _sql.schema_fields, values)
            if set_of is not None:
                own.append(schema)
            if schema.name == DEFAULT_SCHEMA["name"]:
                stored_default = schema
        reads.schemas = label_set(own, stored_default)
    return reads


async def _save(conn: AsyncConnection, rating: Rating, user: AbstractBaseUser) -> None:
    """As services._rating_save, in ONE statement (autocommit: one round trip, one commit).

    Without the ORM path's lock on the turn: a version of the same reviewer committed while
    this statement ran (two quick clicks) is not seen by it, and inserting a second current
    version then fails on the unique index `rating_one_current_per_reviewer`, writing
    nothing; the caller hands that rating to Django's view, which takes the lock."""
    deliveries = rating.saved_deliveries
    rating_values = pg_loop.db_values(_sql.rating_fields, rating, add=True)
    mine = [rating.request_id, user.pk]
    if deliveries:
        supersede = [DeliveryStatus.SUPERSEDED, *mine, deliveries[0].sink, services.UNSENT]
        delivery_values = pg_loop.db_values(_sql.delivery_fields, deliveries[0], add=True)
        params = [*mine, *supersede, *rating_values, *delivery_values]
        saved = await conn.execute(_sql.save_with_delivery, params)
    else:
        saved = await conn.execute(_sql.save, [*mine, *rating_values])
    rating.pk, delivery_id = await saved.fetchone()
    pg_loop.mark_saved(rating)
    for delivery in deliveries:
        delivery.pk, delivery.rating = delivery_id, rating
        pg_loop.mark_saved(delivery)


class _Statements:
    """Built on first use (the models must be loaded), as plain SQL strings."""

    turn_fields = ["id", "deployment_id", "databricks_request_id", "error", "agent_run_state"]

    @cached_property
    def turn(self) -> str:
        """The access stamp, then the turn's `turn_fields` and its outline's version and
        documents."""
        outline = col(RequestLog, "trace_outline")
        return render(
            "SELECT ({}), {}, {} -> 'version', {} -> 'documents' FROM {} WHERE {} = %s",
            sql.SQL(access.STAMP_SQL),
            columns(RequestLog._meta.get_field(name) for name in self.turn_fields),
            outline,
            outline,
            table(RequestLog),
            col(RequestLog, "databricks_request_id"),
        )

    @cached_property
    def schema_fields(self) -> list[str]:
        return [field.attname for field in LabelSchema._meta.concrete_fields]

    @cached_property
    def schemas(self) -> str:
        """As label_values.label_schemas_of_many for the turn's deployment: its linked schemas
        in order, and the stored default; the last column says which are linked."""
        return render(
            "SELECT {schema_columns}, link.{link_deployment} FROM {schemas} AS schema "
            "LEFT JOIN {links} AS link ON link.{link_schema} = schema.{schema_pk} "
            "AND link.{link_deployment} = (SELECT {turn_deployment} FROM {turns} "
            "WHERE {request_id} = %s) "
            "WHERE link.{link_pk} IS NOT NULL OR schema.{name} = %s "
            "ORDER BY link.{order}, link.{link_pk}",
            schema_columns=columns(LabelSchema._meta.concrete_fields, of="schema"),
            schemas=table(LabelSchema),
            links=table(DeploymentLabelSchema),
            link_deployment=col(DeploymentLabelSchema, "deployment"),
            link_schema=col(DeploymentLabelSchema, "schema"),
            link_pk=col(DeploymentLabelSchema, "id"),
            order=col(DeploymentLabelSchema, "order"),
            schema_pk=col(LabelSchema, "id"),
            name=col(LabelSchema, "name"),
            turn_deployment=col(RequestLog, "deployment"),
            turns=table(RequestLog),
            request_id=col(RequestLog, "databricks_request_id"),
        )

    @cached_property
    def rating_fields(self) -> list:
        return pg_loop.concrete_fields(Rating, with_pk=False)

    @cached_property
    def delivery_fields(self) -> list:
        return [f for f in pg_loop.concrete_fields(Delivery, with_pk=False) if f.name != "rating"]

    def _save(self, *, with_delivery: bool) -> str:
        """Retire the reviewer's current version (parameters: turn, reviewer); with a
        delivery, supersede their unsent deliveries if one was current (superseded, turn,
        reviewer, sink, unsent statuses); insert the rating (its values) once the retiring
        is done (the INSERT reads `retired`), and its delivery (its values). Returns the
        rating's id and the delivery's (NULL without one)."""
        parts = {
            "ratings": table(Rating),
            "rating_pk": col(Rating, "id"),
            "request": col(Rating, "request"),
            "reviewer": col(Rating, "reviewer"),
            "current": col(Rating, "is_current"),
            "rating_columns": columns(self.rating_fields),
            "rating_values": placeholders(len(self.rating_fields)),
            "deliveries": table(Delivery),
            "status": col(Delivery, "status"),
            "claimed_at": col(Delivery, "claimed_at"),
            "delivery_rating": col(Delivery, "rating"),
            "sink": col(Delivery, "sink"),
            "delivery_columns": columns(self.delivery_fields),
            "delivery_values": placeholders(len(self.delivery_fields)),
            "delivery_pk": col(Delivery, "id"),
        }
        retire = (
            "WITH retired AS (UPDATE {ratings} SET {current} = false WHERE {request} = %s "
            "AND {reviewer} = %s AND {current} RETURNING {rating_pk}), "
        )
        supersede = (
            "superseded AS (UPDATE {deliveries} SET {status} = %s, {claimed_at} = NULL "
            "WHERE EXISTS (SELECT 1 FROM retired) AND {delivery_rating} IN "
            "(SELECT {rating_pk} FROM {ratings} WHERE {request} = %s AND {reviewer} = %s) "
            "AND {sink} = %s AND {status} = ANY(%s)), "
        )
        insert = (
            "new AS (INSERT INTO {ratings} ({rating_columns}) SELECT {rating_values} "
            "FROM (SELECT count(*) FROM retired) AS after_retiring RETURNING {rating_pk}) "
        )
        if not with_delivery:
            return render("".join((retire, insert, "SELECT {rating_pk}, NULL FROM new")), **parts)
        deliver = (
            "INSERT INTO {deliveries} ({delivery_rating}, {delivery_columns}) "
            "SELECT new.{rating_pk}, {delivery_values} FROM new "
            "RETURNING {delivery_rating}, {delivery_pk}"
        )
        return render("".join((retire, supersede, insert, deliver)), **parts)

    @cached_property
    def save(self) -> str:
        return self._save(with_delivery=False)

    @cached_property
    def save_with_delivery(self) -> str:
        return self._save(with_delivery=True)


_sql = _Statements()
