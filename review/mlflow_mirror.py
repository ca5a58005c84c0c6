"""A review session mirrored on an MLflow tracking server (issue 11 items 3 and 7): one MLflow
label schema per session schema, one CUSTOM review queue with the session's reviewers, the
items whose turns have an MLflow trace, and "complete" on the items that have all their
reviewers. Plain REST (review/mlflow_rest.py); the ids MLflow gives are kept in MlflowMirror, so
mirroring again updates what is there instead of adding to it.

MLflow's queue status is one per item, not per reviewer (mlflow-notes.md): an item is marked
complete when it has the reviewers the session asks for. After that, `item_label_save` enqueues
`mlflow_item_status_sync` (review/tasks.py) for each item that becomes complete; mirroring
again also catches up on any the task missed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from agents.models import Deployment
from feedback.models import InputType, LabelSchema
from review import services
from review.mlflow_rest import MAX_QUEUE_USERS, MlflowError, MlflowRest, tracking_uri_of
from review.models import MlflowMirror, ReviewItem, ReviewSession, ReviewSlot, SlotState
from reviewapp.people import public_id

logger = logging.getLogger(__name__)

QUEUE_NAME_CHARS = 250
COMPLETE = "COMPLETE"


@dataclass(frozen=True)
class MirrorResult:
    queue_id: str
    schema_ids: dict[str, str]  # {label schema name: MLflow schema id}
    schemas_created: int
    schemas_updated: int
    items_attached: int  # items whose trace the experiment has, now all in the queue
    items_not_in_experiment: int  # items with a trace id the experiment does not have
    items_without_trace: int
    items_completed: int  # marked complete by this run


def session_mlflow_server(
    session: ReviewSession, deployment: Deployment | None = None
) -> Deployment:
    """The deployment whose tracking server (and credentials) the session is mirrored with:
    the one given, else the one it was mirrored with before, else the only tracking server
    among the session's deployments. ValidationError when there is none or a choice to make."""
    deployments = list(session.deployments.all())
    if deployment is not None:
        if deployment not in deployments:
            raise ValidationError({"deployment": [f"{deployment} is not of this session."]})
        if not tracking_uri_of(deployment):
            raise ValidationError({"deployment": [f"{deployment} has no MLflow server."]})
        return deployment
    previous = set(
        MlflowMirror.objects.filter(session=session).values_list("deployment", flat=True)
    )
    with_server = [d for d in deployments if tracking_uri_of(d)]
    for candidate in with_server:
        if candidate.pk in previous:
            return candidate
    servers = {tracking_uri_of(d) for d in with_server}
    if not servers:
        raise ValidationError(
            "None of this session's deployments has an MLflow tracking server (an AgentServer's "
            "tracking URI, or MLflow as the feedback sink)."
        )
    if len(servers) > 1:
        raise ValidationError(
            {"deployment": ["This session's deployments use several MLflow servers; name one."]}
        )
    return with_server[0]


def queue_name(session: ReviewSession) -> str:
    # The id keeps two sessions of the same name (every "Week 49") out of each other's queue.
    suffix = f" (#{session.pk})"
    return session.name[: QUEUE_NAME_CHARS - len(suffix)] + suffix


def schema_input(schema: LabelSchema) -> dict:
    """The MLflow input of a label schema. What MLflow's open-source schemas cannot say is lost
    there (our own validation still holds here): a numeric schema's step, and a text list,
    which becomes one text (its max_count too; only Databricks' review app has text lists)."""
    kind = schema.input_type
    if kind == InputType.THUMBS:
        # The app's thumbs are stored as "positive"/"negative" and sent as True/False.
        return {"pass_fail": {"positive_label": "Yes", "negative_label": "No"}}
    if kind in (InputType.CATEGORICAL, InputType.CATEGORICAL_LIST):
        multi = kind == InputType.CATEGORICAL_LIST
        return {"categorical": {"options": list(schema.options), "multi_select": multi}}
    if kind == InputType.NUMERIC:
        return {"numeric": {"min_value": schema.min_value, "max_value": schema.max_value}}
    return {"text": {"max_length": schema.max_length} if schema.max_length else {}}


def schema_fields(schema: LabelSchema) -> dict:
    # MLflow shows the name as the prompt and has no title: the question leads the instruction.
    instruction = schema.title
    if schema.instruction:
        instruction = f"{schema.title}\n\n{schema.instruction}"
    return {
        "type": "EXPECTATION" if schema.is_expectation else "FEEDBACK",
        "input": schema_input(schema),
        "instruction": instruction,
        "enable_comment": schema.enable_comment,
    }


def queue_users(session: ReviewSession) -> list[str]:
    """The reviewers as MLflow knows them (as assessments name them: email, else username):
    those assigned and the members of the assigned groups."""
    users = {public_id(u) for u in session.assigned_users.all()}
    for group in session.assigned_groups.prefetch_related("user_set"):
        users.update(public_id(u) for u in group.user_set.all())
    return sorted(users)


def session_mirror_to_mlflow(
    *,
    session: ReviewSession,
    user: AbstractBaseUser,
    experiment_id: str,
    deployment: Deployment | None = None,
) -> MirrorResult:
    """Create or update the session's label schemas, review queue and items in an experiment
    of its deployments' MLflow server. Safe to run again: it updates, never duplicates.
    ValidationError on anything MLflow refuses or cannot be reached for (what was already
    written stays, and the next run goes on from there)."""
    services.check_can_manage(user)
    experiment_id = str(experiment_id).strip()
    if not experiment_id:
        raise ValidationError({"experiment_id": ["Give the MLflow experiment id."]})
    deployment = session_mlflow_server(session, deployment)
    users = queue_users(session)
    if len(users) > MAX_QUEUE_USERS:
        raise ValidationError(
            f"An MLflow review queue takes at most {MAX_QUEUE_USERS} users; this session has "
            f"{len(users)} reviewers (with its groups' members)."
        )
    try:
        with MlflowRest.for_deployment(deployment) as mlflow:
            mlflow.experiment_get(experiment_id)
            schema_ids, created, updated = _ensure_schemas(mlflow, session, experiment_id)
            queue_id = _ensure_queue(mlflow, session, experiment_id, users, schema_ids)
            MlflowMirror.objects.update_or_create(
                session=session,
                defaults={
                    "deployment": deployment,
                    "tracking_uri": mlflow.base,
                    "experiment_id": experiment_id,
                    "queue_id": queue_id,
                    "schema_ids": schema_ids,
                    "mirrored_at": timezone.now(),
                },
            )
            items = _mirror_items(mlflow, session, experiment_id, queue_id)
    except MlflowError as exc:
        raise ValidationError(f"The session could not be mirrored to MLflow: {exc}") from None
    return MirrorResult(queue_id, schema_ids, created, updated, *items)


def _ensure_schemas(
    mlflow: MlflowRest, session: ReviewSession, experiment_id: str
) -> tuple[dict[str, str], int, int]:
    ids, created, updated = {}, 0, 0
    for link in session.schema_links.select_related("schema"):
        schema, wanted = link.schema, schema_fields(link.schema)
        there = mlflow.label_schema_by_name(experiment_id, schema.name)
        if there is None:
            there = mlflow.label_schema_create(
                {"experiment_id": experiment_id, "name": schema.name, **wanted}
            )
            created += 1
        elif there.get("type") != wanted["type"]:
            raise MlflowError(
                f"the experiment has a label schema {schema.name} of type {there.get('type')}, "
                f"and MLflow cannot change a schema's type to {wanted['type']}."
            )
        elif any(there.get(k) != v for k, v in wanted.items() if k != "type"):
            changes = {k: v for k, v in wanted.items() if k != "type"}
            there = mlflow.label_schema_update({"schema_id": there["schema_id"], **changes})
            updated += 1
        ids[schema.name] = there["schema_id"]
    return ids, created, updated


def _ensure_queue(
    mlflow: MlflowRest,
    session: ReviewSession,
    experiment_id: str,
    users: list[str],
    schema_ids: dict[str, str],
) -> str:
    name, wanted_schemas = queue_name(session), list(schema_ids.values())
    previous = MlflowMirror.objects.filter(
        session=session, experiment_id=experiment_id, tracking_uri=mlflow.base
    ).first()
    queue = mlflow.queue_get(previous.queue_id) if previous else None
    queue = queue or mlflow.queue_by_name(experiment_id, name)
    if queue is None:
        body = {"experiment_id": experiment_id, "name": name, "queue_type": "CUSTOM"}
        return mlflow.queue_create({**body, "users": users, "schema_ids": wanted_schemas})[
            "queue_id"
        ]
    change: dict = {}
    if sorted(queue.get("users") or []) != users:
        change.update(update_users=True, users=users)
    if set(queue.get("schema_ids") or []) != set(wanted_schemas):
        # MLflow refuses this once the queue has items; its message says so.
        change.update(update_schema_ids=True, schema_ids=wanted_schemas)
    if queue.get("name") != name:
        change["name"] = name
    if change:
        mlflow.queue_update({"queue_id": queue["queue_id"], **change})
    return queue["queue_id"]


def _item_traces(items: QuerySet[ReviewItem]) -> list[tuple[int, int, str]]:
    """(item id, done count, trace id or "") of each item: the stored trace's id (MLflow 3,
    then 2), else the id an AgentServer returned (as feedback.sinks.trace_id_of reads it)."""
    rows = items.order_by("pk").values_list(
        "pk",
        "done_count",
        "turn__trace__info__trace_id",
        "turn__trace__info__request_id",
        "turn__mlflow_trace_id",
    )
    return [
        (pk, done, next((i for i in ids if isinstance(i, str) and i), ""))
        for pk, done, *ids in rows
    ]


def _mirror_items(
    mlflow: MlflowRest, session: ReviewSession, experiment_id: str, queue_id: str
) -> tuple[int, int, int, int]:
    items = _item_traces(ReviewItem.objects.filter(session=session))
    traced = [(pk, done, trace) for pk, done, trace in items if trace]
    present = mlflow.traces_in_experiment(sorted({t for _, _, t in traced}), experiment_id)
    attach = [(pk, done, t) for pk, done, t in traced if t in present]
    if attach:
        mlflow.items_add(queue_id, list(dict.fromkeys(t for _, _, t in attach)))
    complete = {i.get("item_id") for i in mlflow.items_list(queue_id, COMPLETE)}
    finished = [
        (pk, t)
        for pk, done, t in attach
        if done >= session.reviewers_per_item and t not in complete
    ]
    finisher = _last_reviewers([pk for pk, _ in finished])
    for pk, trace_id in finished:
        mlflow.item_set_status(queue_id, trace_id, COMPLETE, finisher.get(pk, "review-app"))
    return len(attach), len(traced) - len(attach), len(items) - len(traced), len(finished)


def _last_reviewers(item_ids: list[int]) -> dict[int, str]:
    """{item id: who gave its latest label}, as the queue's `completed_by`."""
    slots = (
        ReviewSlot.objects.filter(item_id__in=item_ids, state=SlotState.DONE)
        .exclude(reviewer=None)
        .select_related("reviewer")
        .order_by("updated_at", "pk")
    )
    return {slot.item_id: public_id(slot.reviewer) for slot in slots}


# --- an item that becomes complete ------------------------------------------------------------


def item_done_enqueue_on_commit(item: ReviewItem) -> None:
    """Called when an item gets its last reviewer: if its session is mirrored, mark it
    complete in MLflow after the commit (a broker outage never fails the label; mirroring again
    catches up)."""
    if not MlflowMirror.objects.filter(session_id=item.session_id).exists():
        return
    from review.tasks import mlflow_item_status_sync as sync_task

    item_id = item.pk
    transaction.on_commit(lambda: sync_task.apply_async((item_id,)), robust=True)


def item_mirror_status(item_id: int) -> str:
    """Mark the item complete in its session's MLflow queue if it has all its reviewers.
    Idempotent. Returns what happened; raises MlflowError only when asking again may work."""
    item = ReviewItem.objects.select_related("session").filter(pk=item_id).first()
    mirror = MlflowMirror.objects.filter(session_id=item.session_id).first() if item else None
    if item is None or mirror is None:
        return "not mirrored"
    if item.done_count < item.session.reviewers_per_item:
        return "not done"
    [(_, _, trace_id)] = _item_traces(ReviewItem.objects.filter(pk=item.pk))
    if not trace_id:
        return "no trace"
    if mirror.deployment is None:
        return "failed: the mirror's deployment was deleted"
    finisher = _last_reviewers([item.pk]).get(item.pk, "review-app")
    try:
        with MlflowRest.for_deployment(mirror.deployment, mirror.tracking_uri) as mlflow:
            # Attach first: the item may have come to the session after the last mirroring.
            mlflow.items_add(mirror.queue_id, [trace_id])
            mlflow.item_set_status(mirror.queue_id, trace_id, COMPLETE, finisher)
    except MlflowError as exc:
        if exc.transient:
            raise
        logger.warning("MLflow status of review item %s not set: %s", item_id, exc)
        return f"failed: {exc}"
    return "complete"
