"""Writes for ratings: save a rating and its delivery in one transaction, then enqueue it.

A rating is saved before anything is sent, so the sink being down never loses one; the task
gets only the delivery's id, published after the commit by a background thread
(`publishing.publish_after_commit`), so neither a slow broker nor one that is down holds up
the answer or fails a saved rating (the sweeper enqueues what was not published).
"""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from agents import access
from agents import selectors as agent_selectors
from agents.models import FeedbackSink, RequestLog
from feedback.deadlocks import retried_on_deadlock
from feedback.label_values import label_schemas_for
from feedback.models import (
    Delivery,
    DeliveryStatus,
    LabelSchema,
    Rating,
)
from feedback.publishing import publish_after_commit
from feedback.validation import clean_retrieval_assessments, clean_text_assessment, retriever_spans
from reviewapp import roles
from reviewapp.people import public_id

UNSENT = [DeliveryStatus.PENDING, DeliveryStatus.FAILED]
EMPTY_RATING = (
    "This rating is empty: answer a question, write a comment or a better answer, or rate a "
    "document."
)


def require_reviewer(user: AbstractBaseUser) -> None:
    """Who may rate: reviewers and admins (the pages, the API and the services ask this)."""
    if not roles.can_review(user):
        raise PermissionDenied("Only reviewers and admins may rate answers.")


def turn_to_rate(user: AbstractBaseUser, request_id: str) -> RequestLog:
    """The turn the user asks to rate (without its trace and raw bodies): PermissionDenied
    unless they may rate, 404 unless they may see it."""
    require_reviewer(user)
    return access.reviewable_turn(user, request_id)


def check_can_rate(user: AbstractBaseUser, turn: RequestLog) -> None:
    require_reviewer(user)
    if turn.error:
        raise ValidationError("This turn failed, so there is no answer to rate.")
    if turn.agent_run_state == "running":
        raise ValidationError(
            "The agent is still answering this turn in the background; rate it once the "
            "answer is there."
        )
    if not turn.deployment.enabled:
        raise ValidationError("This deployment is disabled; its answers cannot be rated.")


def rating_validate(
    *,
    turn: RequestLog,
    text_assessments: Any,
    retrieval_assessments: Any,
    allow_empty: bool = False,
    schemas: list[LabelSchema] | None = None,
    require: bool = False,
) -> tuple[dict, list[dict]]:
    """The protocol shapes (`text_assessments` a list of at most one) cleaned, or a
    ValidationError naming every problem. Nothing is written. `schemas` are what may be
    labelled (the deployment's own when None); `require` enforces their `required`."""
    if schemas is None and text_assessments not in (None, []):
        schemas = label_schemas_for(turn.deployment)
    documents = None
    if retrieval_assessments not in (None, []):
        documents = agent_selectors.retriever_documents(turn.databricks_request_id)
    return rating_clean(
        text_assessments,
        retrieval_assessments,
        schemas=schemas or [],
        documents=documents,
        allow_empty=allow_empty,
        require=require,
    )


def rating_clean(
    text_assessments: Any,
    retrieval_assessments: Any,
    *,
    schemas: list[LabelSchema],
    documents: dict[str, dict] | None,
    allow_empty: bool = False,
    require: bool = False,
) -> tuple[dict, list[dict]]:
    """`rating_validate` once the schemas and the turn's retriever documents
    (agents.selectors.retriever_documents) are read: no query."""
    errors: dict[str, list[str]] = {}
    text: dict = {}
    if text_assessments not in (None, []):
        if not isinstance(text_assessments, list) or len(text_assessments) != 1:
            errors["text_assessments"] = ["Send a list with one text assessment (the answer's)."]
        else:
            try:
                text = clean_text_assessment(schemas, text_assessments[0], required=require)
            except ValidationError as exc:
                errors["text_assessments"] = exc.messages
    cleaned_documents: list[dict] = []
    if retrieval_assessments not in (None, []):
        try:
            spans = retriever_spans(documents)
            cleaned_documents = clean_retrieval_assessments(spans, retrieval_assessments)
        except ValidationError as exc:
            errors["retrieval_assessments"] = exc.messages
    if not errors and not text and not cleaned_documents and not allow_empty:
        errors["non_field_errors"] = [EMPTY_RATING]
    if errors:
        raise ValidationError(errors)
    return text, cleaned_documents


@retried_on_deadlock
@transaction.atomic
def rating_create(
    *,
    turn: RequestLog,
    reviewer: AbstractBaseUser,
    text_assessments: Any = None,
    retrieval_assessments: Any = None,
    allow_empty: bool = False,
    schemas: list[LabelSchema] | None = None,
    require: bool = False,
) -> Rating:
    """Save a new rating (it becomes the reviewer's current one) and its delivery.

    Raises PermissionDenied or ValidationError and saves nothing when the rating is not allowed
    or not valid. `allow_empty` lets a reviewer take everything back (a new, empty version);
    `schemas` and `require` are a review session's (see `rating_validate`).
    """
    check_can_rate(reviewer, turn)
    text, documents = rating_validate(
        turn=turn,
        text_assessments=text_assessments,
        retrieval_assessments=retrieval_assessments,
        allow_empty=allow_empty,
        schemas=schemas,
        require=require,
    )
    _turn_lock(turn)
    return _rating_save(
        turn,
        Rating.objects.filter(request=turn, reviewer=reviewer),
        reviewer=reviewer,
        source_id=public_id(reviewer),
        text_assessment=text,
        retrieval_assessments=documents,
    )


def _turn_lock(turn: RequestLog) -> None:
    """One writer per turn at a time: two quick clicks become two versions, in order, and an
    edit reads the current version no other writer is replacing. A plain lock on purpose:
    asking in it, as EXISTS subqueries, whether there is a version to retire or a delivery to
    supersede spared two queries but cost more CPU than they did (the ORM's work on an EXISTS,
    ~0.4 ms, against a round trip of ~0.1 ms to PostgreSQL)."""
    RequestLog.objects.select_for_update().filter(pk=turn.pk).exists()


def _rating_save(
    turn: RequestLog, versions: QuerySet[Rating], *, replaces: bool = True, **fields: Any
) -> Rating:
    """The new current version of `versions` (one source's ratings of the turn; the caller
    holds `_turn_lock`) and its delivery. `replaces` False: the caller read that there is no
    current version to retire."""
    retired = replaces and versions.filter(is_current=True).update(is_current=False)
    rating = Rating.objects.create(request=turn, deployment=turn.deployment, **fields)
    sink, deliveries = turn.deployment.effective_feedback_sink, []
    if sink != FeedbackSink.NONE:
        # The new version carries everything, so it replaces the earlier versions' deliveries
        # not sent yet. Those exist only beside a current version (each new version supersedes
        # them), unless an admin deleted the current one: then they go out first, in order.
        if retired:
            Delivery.objects.filter(rating__in=versions, sink=sink, status__in=UNSENT).update(
                status=DeliveryStatus.SUPERSEDED, claimed_at=None
            )
        delivery = unsent_delivery(turn.deployment, sink)
        delivery.rating = rating
        delivery.save(force_insert=True)
        publish_after_commit(delivery.pk)
        deliveries.append(delivery)
    # Callers show the delivery just made without reading it again (selectors.delivery_of).
    rating.saved_deliveries = deliveries
    return rating


def unsent_delivery(deployment, sink: str) -> Delivery:
    """A new rating's way to its sink, due now (unsaved: each driver saves it its way)."""
    now = timezone.now()
    return Delivery(deployment=deployment, sink=sink, next_attempt_at=now, retrying_since=now)


SOURCE_CONSENSUS_PREFIX = "consensus:"


@transaction.atomic
def consensus_rating_create(
    *, turn: RequestLog, settled_by: AbstractBaseUser, text_assessment: dict, schemas: list
) -> Rating:
    """The final label of a turn reviewers disagreed on, as an admin settled it: a rating of
    no reviewer whose source is `consensus:<admin>`, replacing an earlier consensus, delivered
    like any other so the sink gets the settled value."""
    text, _ = rating_validate(
        turn=turn,
        text_assessments=[text_assessment],
        retrieval_assessments=[],
        schemas=schemas,
        require=True,
    )
    earlier = Rating.objects.filter(
        request=turn, reviewer=None, source_id__startswith=SOURCE_CONSENSUS_PREFIX
    )
    _turn_lock(turn)
    return _rating_save(
        turn,
        earlier,
        source_id=f"{SOURCE_CONSENSUS_PREFIX}{public_id(settled_by)}"[:254],
        text_assessment=text,
    )


@transaction.atomic
def relayed_rating_create(
    *,
    turn: RequestLog,
    relayed_by: AbstractBaseUser,
    source_id: str,
    text_assessments: Any = None,
    retrieval_assessments: Any = None,
) -> Rating:
    """A rating sent by `relayed_by` for someone else (`source_id`, e.g. an end user of a
    chatbot that relays its users' thumbs): that source's current rating of the turn, replacing
    their earlier one. The caller must be allowed to relay (feedback.inbound checks it)."""
    check_can_rate(relayed_by, turn)
    if source_id.startswith(SOURCE_CONSENSUS_PREFIX):
        raise ValidationError(f"source.id may not start with {SOURCE_CONSENSUS_PREFIX!r}.")
    text, documents = rating_validate(
        turn=turn, text_assessments=text_assessments, retrieval_assessments=retrieval_assessments
    )
    earlier = Rating.objects.filter(request=turn, reviewer=None, source_id=source_id)
    _turn_lock(turn)
    return _rating_save(
        turn,
        earlier,
        source_id=source_id,
        text_assessment=text,
        retrieval_assessments=documents,
        relayed_by=relayed_by,
    )


@transaction.atomic
def evaluator_rating_create(
    *, turn: RequestLog, source_type: str, source_id: str, name: str, value: Any, rationale: str
) -> Rating:
    """An evaluator's score of a turn (evaluation runs): a rating of no reviewer whose source
    is the evaluator (`source_type` CODE or LLM_JUDGE), replacing that source's earlier one and
    forwarded like any other, so a sink gets it beside the reviewers' ratings."""
    given = {"value": value, **({"rationale": rationale} if rationale else {})}
    earlier = Rating.objects.filter(request=turn, reviewer=None, source_id=source_id)
    _turn_lock(turn)
    return _rating_save(
        turn,
        earlier,
        source_id=source_id[:254],
        source_type=source_type,
        text_assessment={"ratings": {name: given}},
    )


def rating_text_from_form(
    answers: dict[str, Any], comment: str, better: str, expectations: dict | None = None
) -> dict:
    """The answer form's fields as a text assessment (empty answers left out)."""
    ratings = {
        name: {"value": value} for name, value in answers.items() if value not in ("", None, [])
    }
    text: dict[str, Any] = {"ratings": ratings}
    given = {n: {"value": v} for n, v in (expectations or {}).items() if v not in ("", None, [])}
    if given:
        text["expectations"] = given
    if comment.strip():
        text["free_text_comment"] = comment
    if better.strip():
        text["suggested_output"] = better
    return text


@transaction.atomic
def rating_change(
    *,
    turn: RequestLog,
    reviewer: AbstractBaseUser,
    text_assessment: dict | None = None,
    document: dict | None = None,
    clear_document: tuple[str, int] | None = None,
    retrieval_assessments: list | None = None,
    schemas: list[LabelSchema] | None = None,
    better_answer: bool = True,
    require: bool = False,
) -> Rating:
    """A page's edit: a new version of the reviewer's current rating with one part replaced,
    everything else kept. The part is the page's answers (`text_assessment`: its `schemas`, the
    deployment's when None, its comment and, with `better_answer`, its better answer; what
    other pages asked is kept, so a review session's label and the chat's rating do not erase
    each other), one document's rating, or all of them (`retrieval_assessments`). Taking the
    last part back leaves an empty version, so the newest rating says "nothing"."""
    check_can_rate(reviewer, turn)
    asked = schemas if schemas is not None else label_schemas_for(turn.deployment)
    # Only what the page sends is checked: the parts kept were checked when they were saved.
    new_documents = [document] if document is not None else retrieval_assessments
    answered, checked_documents = rating_validate(
        turn=turn,
        text_assessments=None if text_assessment is None else [text_assessment],
        retrieval_assessments=new_documents,
        allow_empty=True,
        schemas=asked,
        require=require,
    )
    versions = Rating.objects.filter(request=turn, reviewer=reviewer)
    _turn_lock(turn)  # before reading the current version, so a concurrent edit is not lost
    current = (
        versions.filter(is_current=True)
        .values_list("text_assessment", "retrieval_assessments")
        .first()
    )
    text, documents = (dict(current[0]), list(current[1])) if current else ({}, [])
    if text_assessment is not None:
        text = text_assessment_merged(text, answered, asked, better_answer=better_answer)
    if retrieval_assessments is not None:
        documents = checked_documents
    if document is not None or clear_document is not None:
        key = clear_document or (document["step_id"], document["position"])
        # Ratings of a retrieval as a whole have no position; they are kept as they are.
        documents = [d for d in documents if (d.get("step_id"), d.get("position")) != tuple(key)]
        documents += checked_documents
        documents.sort(key=lambda d: (d.get("step_id") or "", d.get("position", -1)))
    if current is None and not text and not documents:
        raise ValidationError({"non_field_errors": [EMPTY_RATING]})
    return _rating_save(
        turn,
        versions,
        replaces=current is not None,
        reviewer=reviewer,
        source_id=public_id(reviewer),
        text_assessment=text,
        retrieval_assessments=documents,
    )


def text_assessment_merged(
    current: dict, answered: dict, schemas: list[LabelSchema], *, better_answer: bool
) -> dict:
    """`answered` (a page's answers to `schemas`, its comment and, with `better_answer`, its
    better answer) over the `current` text assessment, whose other parts are kept."""
    names = {schema.name for schema in schemas}
    merged: dict = {}
    for field in ("ratings", "expectations"):
        kept = {n: v for n, v in current.get(field, {}).items() if n not in names}
        kept.update(answered.get(field, {}))
        if kept:
            merged[field] = kept
    for field, owned in (("free_text_comment", True), ("suggested_output", better_answer)):
        value = answered.get(field) if owned else current.get(field)
        if value:
            merged[field] = value
    if current.get("step_id"):
        merged["step_id"] = current["step_id"]
    return merged


def delivery_resend(*, delivery: Delivery) -> bool:
    """Send a failed delivery again: pending, due now, enqueued. False if it was not failed."""
    with transaction.atomic():
        updated = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.FAILED).update(
            status=DeliveryStatus.PENDING,
            next_attempt_at=timezone.now(),
            retrying_since=timezone.now(),
            claimed_at=None,
            last_error="",
        )
        if updated:
            publish_after_commit(delivery.pk)
    return bool(updated)
