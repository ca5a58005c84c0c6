"""Reads: which deployments a user may see, with the figures the deployments page shows."""

from functools import lru_cache

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Count, IntegerField, Max, Q, QuerySet
from django.db.models.functions import Cast
from django.http import Http404

from agents import tracking
from agents.models import Conversation, Deployment, RequestLog
from agents.trace_outline import OUTLINE_VERSION, TraceOutline, outline_of
from agents.trace_values import gc_paused
from agents.traces import NormalizedTrace, Span, normalize_trace
from reviewapp import roles

# A big trace is tens of MB and its outline a few; pages that list turns need neither.
HEAVY_COLUMNS = ("request_raw", "response_raw", "trace", "trace_outline")


def deployments_visible_to(
    user: AbstractBaseUser, *, include_disabled: bool = False
) -> QuerySet[Deployment]:
    """Admins see every deployment; users with a role see the enabled ones open to them (and
    the disabled ones with `include_disabled`: a chat says "disabled" rather than "not found").

    A deployment with no allowed users and no allowed groups is open to everyone with a role.
    """
    deployments = Deployment.objects.all()
    if roles.is_admin(user):
        return deployments
    if not roles.can_chat(user):
        return deployments.none()
    open_to_all = Q(allowed_users__isnull=True, allowed_groups__isnull=True)
    granted = Q(allowed_users=user) | Q(allowed_groups__in=user.groups.all())
    visible_ids = Deployment.objects.filter(open_to_all | granted).values("pk")
    if not include_disabled:
        deployments = deployments.filter(enabled=True)
    return deployments.filter(pk__in=visible_ids)


def deployment_get_for_user(
    user: AbstractBaseUser, pk: int, *, include_disabled: bool = False
) -> Deployment:
    """The deployment, or 404 whether it does not exist or the user may not see it."""
    try:
        return deployments_visible_to(user, include_disabled=include_disabled).get(pk=pk)
    except Deployment.DoesNotExist:
        raise Http404("No such deployment.") from None


def deployment_list(
    user: AbstractBaseUser, *, model_name: str = "", model_version: str = "", search: str = ""
) -> QuerySet[Deployment]:
    deployments = deployments_visible_to(user)
    if model_name:
        deployments = deployments.filter(model_name=model_name)
    if model_version:
        deployments = deployments.filter(model_version=model_version)
    if search:
        deployments = deployments.filter(
            Q(display_name__icontains=search)
            | Q(model_name__icontains=search)
            | Q(endpoint_name__icontains=search)
        )
    return deployments


def deployment_list_with_usage(user: AbstractBaseUser, **filters: str) -> QuerySet[Deployment]:
    """The list page's rows: only the columns it shows, plus request count and last use."""
    return (
        deployment_list(user, **filters)
        .only(
            "id",
            "display_name",
            "model_name",
            "model_version",
            "endpoint_name",
            "query_endpoint",
            "enabled",
            "health_status",
            "health_detail",
            "health_checked_at",
        )
        .annotate(request_count=Count("requests"), last_used_at=Max("requests__created_at"))
        # Aggregation drops Meta.ordering; versions are digits, so sort them as numbers.
        .order_by("model_name", Cast("model_version", IntegerField()).desc(), "pk")
    )


def conversations_of(user: AbstractBaseUser, deployment: Deployment) -> QuerySet[Conversation]:
    return Conversation.objects.filter(user=user, deployment=deployment).order_by("-updated_at")


def conversation_get_for_user(
    user: AbstractBaseUser, deployment: Deployment, conversation_id: object
) -> Conversation:
    """Only the owner sees a conversation; anything else is a 404."""
    try:
        return conversations_of(user, deployment).get(pk=conversation_id)
    except (Conversation.DoesNotExist, ValidationError, ValueError):
        raise Http404("No such conversation.") from None


def requests_visible_to(user: AbstractBaseUser) -> QuerySet[RequestLog]:
    """Reviewers and admins see every turn of the deployments they may review; stakeholders
    see their own turns only."""
    deployments = deployments_visible_to(user)
    turns = RequestLog.objects.filter(deployment__in=deployments)
    if roles.can_review(user):
        return turns
    return turns.filter(user=user)


def request_get_for_user(
    user: AbstractBaseUser, request_id: str, *, with_trace: bool = True
) -> RequestLog:
    """The turn, or 404 unless the user may see it. A trace can be tens of MB of JSON, so pages
    that only show whether there is one load it `with_trace=False`.

    `with_trace` also reads an AgentServer turn's trace from its tracking server the first time
    (agents.tracking); when that fails, `turn.trace` stays None and `turn.trace_error` says why.
    """
    turns = requests_visible_to(user).select_related("deployment", "user")
    if not with_trace:
        turns = _without_heavy_columns(turns)
    try:
        turn = turns.get(databricks_request_id=request_id)
    except RequestLog.DoesNotExist:
        raise Http404("No such request.") from None
    if with_trace:
        turn.trace_error = ""
        try:
            tracking.trace_for_turn(turn)
        except tracking.TraceUnavailable as exc:
            turn.trace_error = tracking.unavailable_message(exc)
    return turn


def request_by_id(request_id: str) -> RequestLog | None:
    """The turn without its trace and raw bodies, whoever asks: callers check who may see it
    (agents.access.reviewable_turn)."""
    turns = RequestLog.objects.select_related("deployment", "user")
    return _without_heavy_columns(turns).filter(databricks_request_id=request_id).first()


def _without_heavy_columns(turns: QuerySet[RequestLog]) -> QuerySet[RequestLog]:
    return turns.defer(*HEAVY_COLUMNS).annotate(trace_present=Q(trace__isnull=False))


def request_list(
    user: AbstractBaseUser, *, deployment_id: str = "", conversation_id: str = ""
) -> QuerySet[RequestLog]:
    """Newest first, without the heavy columns (raw bodies, trace)."""
    turns = _without_heavy_columns(requests_visible_to(user))
    if deployment_id:
        turns = turns.filter(deployment_id=deployment_id)
    if conversation_id:
        turns = turns.filter(conversation_id=conversation_id)
    return turns.order_by("-created_at")


def conversation_turns(conversation: Conversation) -> QuerySet[RequestLog]:
    turns = conversation.turns.select_related("deployment")
    return _without_heavy_columns(turns).order_by("created_at")


def trace_normalized(request_id: str) -> NormalizedTrace | None:
    """The turn's trace as one span tree, or None. None also while an AgentServer turn's trace
    cannot be read from its tracking server (`trace_normalized_or_raise` says why).

    No access check: callers have already fetched the turn for the user.
    """
    try:
        return trace_normalized_or_raise(request_id)
    except tracking.TraceUnavailable:
        return None


@lru_cache(maxsize=8)  # a 50,000-span trace takes tens of MB once normalized
def trace_normalized_or_raise(request_id: str) -> NormalizedTrace | None:
    """The turn's trace as one span tree, normalized once per process (traces never change).
    An AgentServer turn's trace is fetched from its tracking server and stored first; a failed
    fetch raises tracking.TraceUnavailable, which is not cached, so the next call tries again.

    No access check: callers have already fetched the turn for the user.
    """
    # Decoding a big trace column makes millions of objects; the cyclic GC's passes over them
    # would double the time, and none of them can form a cycle.
    with gc_paused():
        row = (
            RequestLog.objects.filter(databricks_request_id=request_id)
            .values_list("trace", "mlflow_trace_id")
            .first()
        )
    raw, mlflow_trace_id = row or (None, "")
    if raw is None and mlflow_trace_id:
        raw = _tracked_trace(request_id)
    return normalize_trace(raw) if raw else None


class _NoOutline(Exception):
    """Raised inside the cache so that "no outline (yet)" is not kept: lru_cache keeps no
    exception, and an AgentServer trace missing now may be readable on the next open."""


def trace_outline_or_raise(request_id: str) -> TraceOutline | None:
    """The turn's span tree without the spans' contents, read from its stored outline; the
    stored trace is not read. A turn saved before outlines existed (or with an outline of an
    older version) gets one now, made from its trace and kept. An AgentServer turn's trace is
    fetched first, as `trace_normalized_or_raise` does. An outline found is kept per process.

    No access check: callers have already fetched the turn for the user.
    """
    try:
        return _stored_outline(request_id)
    except _NoOutline:
        return None


def trace_outlines_forget() -> None:
    """Forget the outlines this process keeps (tests: as another process would open them)."""
    _stored_outline.cache_clear()


@lru_cache(maxsize=32)  # a 50,000-span outline takes a few MB once read
def _stored_outline(request_id: str) -> TraceOutline:
    turns = RequestLog.objects.filter(databricks_request_id=request_id)
    with gc_paused():  # decoding a big outline makes ~100,000 objects, none in a cycle
        row = turns.values_list("trace_outline", "mlflow_trace_id", Q(trace__isnull=False)).first()
    if row is None:
        raise _NoOutline
    stored, mlflow_trace_id, has_trace = row
    outline = TraceOutline.from_stored(stored)
    if outline is not None:
        return outline
    if has_trace:
        with gc_paused():
            raw = turns.values_list("trace", flat=True).first()
        stored = outline_of(raw)
        turns.update(trace_outline=stored)
    elif mlflow_trace_id and _tracked_trace(request_id) is not None:
        stored = turns.values_list("trace_outline", flat=True).first()
    outline = TraceOutline.from_stored(stored)
    if outline is None:
        raise _NoOutline
    return outline


def trace_span_or_raise(request_id: str, span_id: str) -> Span | None:
    """One span of the turn's trace with its contents, read alone from the stored trace (the
    database picks it out of the JSON), or None when the trace has no such span.

    No access check: callers have already fetched the turn for the user.
    """
    outline = trace_outline_or_raise(request_id)
    entry = outline.find(span_id) if outline is not None else None
    if entry is None:
        return None
    raw = None
    if outline.spans_path is not None:  # else the trace was stored as JSON text
        where = "__".join(["trace", *outline.spans_path, str(entry.source_index)])
        raw = (
            RequestLog.objects.filter(databricks_request_id=request_id)
            .values_list(where, flat=True)
            .first()
        )
    if isinstance(raw, dict):
        return outline.read_span(entry, raw)
    trace = trace_normalized_or_raise(request_id)  # the whole trace, normalized
    return trace.find(entry.span_id) if trace is not None else None


def retriever_documents(request_id: str) -> dict[str, dict] | None:
    """Each retriever span of the turn's trace, by span id: its name and its documents'
    positions; None when there is no trace (or it cannot be fetched now). Read from the stored
    outline's `documents` key alone, not the trace, which may be tens of MB; an outline of an
    older version is made again first (`trace_outline_or_raise`).

    No access check: callers have already fetched the turn for the user.
    """
    turns = RequestLog.objects.filter(databricks_request_id=request_id)
    row = turns.values_list("trace_outline__version", "trace_outline__documents").first()
    if row is not None and row[0] == OUTLINE_VERSION:
        return row[1]
    try:
        outline = trace_outline_or_raise(request_id)
    except tracking.TraceUnavailable:
        return None
    return outline.documents if outline is not None else None


def trace_span(request_id: str, span_id: str) -> Span | None:
    """`trace_span_or_raise`, with None also while the trace cannot be fetched."""
    try:
        return trace_span_or_raise(request_id, span_id)
    except tracking.TraceUnavailable:
        return None


def _tracked_trace(request_id: str) -> dict | None:
    turn = (
        RequestLog.objects.select_related("deployment")
        .defer(*HEAVY_COLUMNS)
        .filter(databricks_request_id=request_id)
        .first()
    )
    if turn is None:
        return None
    turn.trace = None  # read just now; spares loading the deferred column again
    return tracking.trace_for_turn(turn)
