"""A review session's expectations as an MLflow evaluation dataset (issue 11 item 7).

One record per item that has expectations: `inputs` (what the agent was asked), `expectations`
({schema name: value}, the better answer as `expected_response`), the trace as its source and
the session and item as tags. Written with MLflow's REST API (`datasets/search|create`, then
`datasets/{id}/records`, which updates a record with the same inputs instead of adding one), so
running it again brings the dataset up to date.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError

from agents.models import Deployment, RequestLog
from agents.traces import normalize_trace
from feedback.label_values import label_given
from feedback.models import EXPECTED_RESPONSE, InputType, LabelSchema, Rating
from review import services
from review.mlflow_mirror import session_mlflow_server
from review.mlflow_rest import MlflowError, MlflowRest
from review.models import ReviewItem, ReviewSession, ReviewSlot, SlotState

UPSERT_CHUNK = 200
NAME_CHARS = 500


@dataclass(frozen=True)
class DatasetResult:
    dataset_id: str
    records: int  # items written
    inserted: int
    updated: int
    items_without_expectations: int
    items_with_conflicts: int  # reviewers gave different values: those expectations left out


def session_expectations_to_mlflow_dataset(
    *,
    session: ReviewSession,
    user: AbstractBaseUser,
    experiment_id: str,
    name: str,
    deployment: Deployment | None = None,
) -> DatasetResult:
    """Write the items' expectations to the evaluation dataset `name` of the experiment
    (created if the experiment has none of that name).

    Which labels count: the admin's consensus rating when the item was settled; else every
    reviewer's current label. When reviewers gave different values for an expectation (or
    different better answers), that expectation is left out of the record and the item is
    counted in `items_with_conflicts`: an evaluation dataset is ground truth, so a contested
    value waits for an admin to settle the item (then the next run writes it). Values every
    reviewer who answered agrees on are written.

    Two items asked exactly the same (equal inputs) share one record in MLflow, which merges
    their expectations."""
    services.check_can_manage(user)
    experiment_id, name = str(experiment_id).strip(), name.strip()
    if not experiment_id:
        raise ValidationError({"experiment_id": ["Give the MLflow experiment id."]})
    if not name or len(name) > NAME_CHARS or "'" in name:
        raise ValidationError(
            {"name": [f"Give a dataset name of at most {NAME_CHARS} characters, without '."]}
        )
    deployment = session_mlflow_server(session, deployment)
    records, empty, conflicts = session_expectation_records(session)
    inserted = updated = 0
    try:
        with MlflowRest.for_deployment(deployment) as mlflow:
            mlflow.experiment_get(experiment_id)
            dataset = mlflow.dataset_by_name(experiment_id, name)
            dataset = dataset or mlflow.dataset_create(experiment_id, name)
            for start in range(0, len(records), UPSERT_CHUNK):
                added, changed = mlflow.records_upsert(
                    dataset["dataset_id"], records[start : start + UPSERT_CHUNK]
                )
                inserted, updated = inserted + added, updated + changed
    except MlflowError as exc:
        raise ValidationError(f"The dataset could not be written to MLflow: {exc}") from None
    return DatasetResult(dataset["dataset_id"], len(records), inserted, updated, empty, conflicts)


def session_expectation_records(session: ReviewSession) -> tuple[list[dict], int, int]:
    """(records, items without expectations, items with conflicting expectations)."""
    # The session's expectations; the better answer (`suggested_output`) is always read.
    schemas = [link.schema for link in session.schema_links.select_related("schema")]
    wanted = [s for s in schemas if s.is_expectation and s.name != EXPECTED_RESPONSE]
    labels = _labels_by_item(session)
    records, empty, conflicts = [], 0, 0
    # A turn's trace may be tens of MB: read only for the items that make a record.
    items = ReviewItem.objects.filter(session=session).select_related("turn", "consensus")
    items = items.defer("turn__trace", "turn__trace_outline", "turn__request_raw")
    for item in items.order_by("pk").iterator(chunk_size=500):
        if item.consensus is not None:
            given = [item.consensus.text_assessment]
        else:
            given = labels.get(item.pk, [])
        expectations, contested = _agreed(given, wanted)
        conflicts += contested
        if not expectations:
            empty += 1
            continue
        records.append(_record(session, item, expectations))
    return records, empty, conflicts


def _labels_by_item(session: ReviewSession) -> dict[int, list[dict]]:
    """{item id: [text assessment]}: each reviewer's current label of the turn (a newer
    version from the chat page counts, as in the agreement figures)."""
    slots = ReviewSlot.objects.filter(
        session=session, state=SlotState.DONE, reviewer__isnull=False
    ).values_list("item_id", "item__turn_id", "reviewer_id")
    item_of = {(turn_id, reviewer_id): item_id for item_id, turn_id, reviewer_id in slots}
    ratings = Rating.objects.filter(
        request_id__in={turn_id for turn_id, _ in item_of}, is_current=True
    ).values_list("request_id", "reviewer_id", "text_assessment")
    out: dict[int, list[dict]] = {}
    for turn_id, reviewer_id, text in ratings:
        item_id = item_of.get((turn_id, reviewer_id))
        if item_id is not None:
            out.setdefault(item_id, []).append(text or {})
    return out


def _agreed(given: list[dict], schemas: list[LabelSchema]) -> tuple[dict, int]:
    """({name: value} the labels agree on, 1 if some expectation was contested else 0)."""
    out, contested = {}, 0
    answers = {s.name: [label_given(t, s) for t in given] for s in schemas}
    answers[EXPECTED_RESPONSE] = [t.get("suggested_output") for t in given]
    by_name = {s.name: s for s in schemas}
    for name, values in answers.items():
        values = [v for v in values if v not in (None, "", [])]
        if not values:
            continue
        if any(v != values[0] for v in values[1:]):
            contested = 1
            continue
        schema = by_name.get(name)
        out[name] = mlflow_value(schema, values[0]) if schema else values[0]
    return out, contested


def mlflow_value(schema: LabelSchema, value: Any) -> Any:
    """A stored label value as MLflow holds it (as the assessments sink sends it)."""
    if schema.input_type == InputType.THUMBS:
        return value == "positive"
    if schema.input_type == InputType.NUMERIC:
        return float(value)
    return value


def _record(session: ReviewSession, item: ReviewItem, expectations: dict) -> dict:
    turn = item.turn
    trace = RequestLog.objects.filter(pk=turn.pk).values_list("trace", flat=True).first()
    record: dict[str, Any] = {
        "inputs": _inputs(turn, trace),
        "expectations": expectations,
        "tags": {
            "review_app.session": str(session.pk),
            "review_app.item": str(item.pk),
            "review_app.request_id": turn.databricks_request_id,
        },
    }
    trace_id = _trace_id(turn, trace)
    if trace_id:
        record["source"] = {"source_type": "TRACE", "source_data": {"trace_id": trace_id}}
    return record


def _inputs(turn: RequestLog, trace: Any) -> dict:
    """What the agent was asked: its trace's root span inputs (what `mlflow.genai.evaluate`
    passes to the agent again), else the turn's question as a chat message."""
    if trace is not None:
        roots = normalize_trace(trace).roots
        if roots and isinstance(roots[0].inputs, dict) and roots[0].inputs:
            return roots[0].inputs
    return {"messages": [{"role": "user", "content": turn.request}]}


def _trace_id(turn: RequestLog, trace: Any) -> str:
    info = trace.get("info") if isinstance(trace, dict) else None
    info = info if isinstance(info, dict) else {}
    for value in (info.get("trace_id"), info.get("request_id"), turn.mlflow_trace_id):
        if isinstance(value, str) and value:
            return value
    return ""
