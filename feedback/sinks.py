"""What each feedback sink receives, and how its answer is judged.

- Databricks feedback endpoint: `{"dataframe_records": [...]}` (protocol.md §4.2), several
  ratings of one deployment per POST;
- MLflow assessments API: one POST per assessment (protocol.md §4.4) on the rated trace.

`Outcome.kind` is "sent", "retry" (no answer, 5xx, 429: the sink may take it later) or "failed"
(any other answer: sending it again unchanged would fail again).
"""

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.conf import settings

from agents.auth import AgentAuthError, auth_headers, needs_a_thread
from agents.models import Deployment, RequestLog
from feedback import transport
from feedback.label_values import DEFAULT_SCHEMA, THUMBS_VALUES
from feedback.models import (
    CHUNK_RELEVANCE,
    SOURCE_TYPE_HUMAN,
    Delivery,
    DeliveryStatus,
    InputType,
    Rating,
)
from feedback.selectors import label_schemas_by_name
from reviewapp import jsonlimits

ERROR_EXCERPT_CHARS = 500


@dataclass
class Outcome:
    kind: str  # "sent" | "retry" | "failed"
    status_code: int | None = None
    error: str = ""
    retry_after_s: float | None = None
    duration_ms: int = 0
    body: str = ""  # the sink's answer, for what it created


def judge(response: transport.SinkResponse) -> Outcome:
    code = response.status_code
    if 200 <= code < 300:
        return Outcome("sent", code, body=response.text)
    body = " ".join(response.text.split())[:ERROR_EXCERPT_CHARS]
    error = f"HTTP {code}: {body}" if body else f"HTTP {code}"
    kind = "retry" if code >= 500 or code == 429 else "failed"
    return Outcome(kind, code, error, response.retry_after_s)


def _post(url: str, body: dict, headers: dict[str, str]) -> Outcome:
    started = time.monotonic()
    try:
        response = transport.post_json(
            url, body, headers=headers, timeout_s=settings.DELIVERY_TIMEOUT_SECONDS
        )
        outcome = judge(response)
    except transport.TransportError as exc:
        outcome = Outcome("retry", None, f"No answer from the sink: {exc}")
    outcome.duration_ms = int((time.monotonic() - started) * 1000)
    return outcome


def _headers(deployment: Deployment, idempotency_key: str) -> dict[str, str] | Outcome:
    try:
        return {**auth_headers(deployment), "Idempotency-Key": idempotency_key}
    except AgentAuthError as exc:
        # A variable that is not set needs an admin; databricks-sdk may fail for a while (its
        # host or token refresh unreachable) and work again.
        kind = "retry" if needs_a_thread(deployment) else "failed"
        return Outcome(kind, None, f"No usable credentials for the sink: {exc}")


# --- Databricks feedback endpoint ----------------------------------------------------------------


def databricks_text_assessment(text: dict) -> dict:
    """The stored text assessment in the record's fields: the feedback record has no place for
    expectations other than `suggested_output`, so they go into `ratings` too, and every rating
    value is a string there (a list as its JSON)."""
    ratings = {**text.get("ratings", {}), **text.get("expectations", {})}
    out = {k: v for k, v in text.items() if k not in ("ratings", "expectations")}
    if ratings:
        out = {
            "ratings": {
                name: {**given, "value": as_text(given["value"])} for name, given in ratings.items()
            },
            **out,
        }
    return out


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def databricks_record(rating: Rating, *, as_json_strings: bool) -> dict[str, Any]:
    """One `dataframe_records` entry, exactly the fields of protocol.md §4.2."""
    text = databricks_text_assessment(rating.text_assessment)
    record: dict[str, Any] = {
        "request_id": rating.request.databricks_request_id,
        "source": {"id": rating.source_id, "type": rating.source_type},
        "text_assessments": [text] if text else [],
        "retrieval_assessments": rating.retrieval_assessments,
    }
    if as_json_strings:  # as Databricks' own chatbot template sends them
        for column in ("source", "text_assessments", "retrieval_assessments"):
            record[column] = json.dumps(record[column])
    return record


def record_size(delivery: Delivery) -> int:
    """About how many bytes the delivery's record adds to a POST."""
    record = databricks_record(delivery.rating, as_json_strings=False)
    return len(json.dumps(record, ensure_ascii=False).encode())


def send_databricks(deployment: Deployment, deliveries: list[Delivery]) -> Outcome:
    key = str(deliveries[0].idempotency_key) if len(deliveries) == 1 else _batch_key(deliveries)
    headers = _headers(deployment, key)
    if isinstance(headers, Outcome):
        return headers
    # Oldest rating first, so that a sink reading them in order keeps the newest version.
    ordered = sorted(deliveries, key=lambda d: (d.rating.created_at, d.rating_id))
    records = [
        databricks_record(d.rating, as_json_strings=deployment.feedback_json_strings)
        for d in ordered
    ]
    return _post(deployment.effective_feedback_endpoint, {"dataframe_records": records}, headers)


def _batch_key(deliveries: list[Delivery]) -> str:
    # The same batch tried again carries the same key.
    keys = ",".join(sorted(str(d.idempotency_key) for d in deliveries))
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"reviewapp-feedback-batch:{keys}"))


# --- MLflow assessments --------------------------------------------------------------------------


def _mlflow_value(kind: str, value: Any) -> Any:
    if kind == InputType.THUMBS:
        return value == "positive"
    if kind == InputType.NUMERIC:
        return float(value)
    return value


def mlflow_source_type(rating: Rating) -> str:
    """A reviewer's rating is HUMAN; an evaluator's keeps its own (CODE, LLM_JUDGE)."""
    return "HUMAN" if rating.source_type == SOURCE_TYPE_HUMAN else rating.source_type


def mlflow_assessments(rating: Rating, trace_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(key, assessment) pairs: a feedback per answered question, an expectation for the
    suggested answer, a `chunk_relevance` feedback per rated document on its retriever span."""
    stamp = rating.created_at.astimezone(UTC).isoformat(timespec="milliseconds")
    stamp = stamp.replace("+00:00", "Z")
    base = {
        "trace_id": trace_id,
        "source": {"source_type": mlflow_source_type(rating), "source_id": rating.source_id},
        "create_time": stamp,
        "last_update_time": stamp,
    }
    meta = {"request_id": rating.request.databricks_request_id, "rating_id": str(rating.pk)}
    kinds = {DEFAULT_SCHEMA["name"]: DEFAULT_SCHEMA["input_type"]}
    kinds.update((name, schema.input_type) for name, schema in label_schemas_by_name().items())
    text = rating.text_assessment
    comment = text.get("free_text_comment")
    out: list[tuple[str, dict[str, Any]]] = []
    for name, given in text.get("ratings", {}).items():
        item = {**base, "assessment_name": name, "metadata": meta}
        item["feedback"] = {"value": _mlflow_value(kinds.get(name, ""), given["value"])}
        rationale = given.get("rationale") or comment
        if rationale:
            item["rationale"] = rationale
        out.append((f"q:{name}", item))
    if comment and not text.get("ratings"):
        item = {**base, "assessment_name": "comment", "metadata": meta}
        out.append(("comment", {**item, "feedback": {"value": comment}}))
    for name, given in text.get("expectations", {}).items():
        item = {**base, "assessment_name": name, "metadata": meta}
        out.append((f"e:{name}", {**item, "expectation": {"value": given["value"]}}))
    if text.get("suggested_output"):
        item = {**base, "assessment_name": "expected_response", "metadata": meta}
        out.append(
            ("expected_response", {**item, "expectation": {"value": text["suggested_output"]}})
        )
    for doc in rating.retrieval_assessments:
        if "position" not in doc:
            out.extend(_whole_retrieval_assessments(base, meta, doc))
            continue
        item = {
            **base,
            "assessment_name": CHUNK_RELEVANCE,
            "span_id": doc["step_id"],
            "metadata": {**meta, "position": str(doc["position"])},
        }
        relevance = doc.get("ratings", {}).get(CHUNK_RELEVANCE)
        if relevance:
            item["feedback"] = {"value": relevance["value"] == "positive"}
            if doc.get("free_text_comment"):
                item["rationale"] = doc["free_text_comment"]
        else:  # a comment on a document without a verdict
            item = {**item, "assessment_name": "chunk_comment"}
            item["feedback"] = {"value": doc["free_text_comment"]}
        out.append((f"doc:{doc['step_id']}:{doc['position']}", item))
    return out


def _whole_retrieval_assessments(base: dict, meta: dict, doc: dict) -> list[tuple[str, dict]]:
    """A rating of a retrieval as a whole (no position): one feedback per rating name, on the
    retriever span when the rating names one, else on the trace."""
    step = doc.get("step_id")
    where = {"span_id": step} if step else {}
    metadata = {**meta, "scope": "retrieval"}
    comment = doc.get("free_text_comment")
    out = []
    for name, given in doc.get("ratings", {}).items():
        item = {**base, **where, "assessment_name": name, "metadata": metadata}
        value = given["value"]
        # "positive"/"negative" as booleans, like the answer's thumbs and chunk_relevance.
        item["feedback"] = {"value": value == "positive" if value in THUMBS_VALUES else value}
        if given.get("rationale") or comment:
            item["rationale"] = given.get("rationale") or comment
        out.append((f"retrieval:{step or ''}:{name}", item))
    if comment and not doc.get("ratings"):
        item = {**base, **where, "assessment_name": "retrieval_comment", "metadata": metadata}
        out.append((f"retrieval:{step or ''}:comment", {**item, "feedback": {"value": comment}}))
    return out


def _previous_assessment_ids(rating: Rating) -> dict[str, str]:
    """The MLflow ids of the reviewer's previous delivered rating, which the new one overrides."""
    previous = (
        Delivery.objects.filter(
            rating__request_id=rating.request_id,
            rating__reviewer_id=rating.reviewer_id,
            rating__created_at__lte=rating.created_at,
            sink=rating.deployment.effective_feedback_sink,
            status=DeliveryStatus.SENT,
        )
        .exclude(rating_id=rating.pk)
        .order_by("-rating__created_at", "-rating_id")
        .values_list("sink_state", flat=True)
        .first()
    )
    return (previous or {}).get("assessment_ids", {})


def send_mlflow(delivery: Delivery, *, deadline: float) -> Outcome:
    """Post the rating's assessments not yet created (a retry skips those that were)."""
    rating, deployment = delivery.rating, delivery.deployment
    trace_id = trace_id_of(rating.request_id)
    if not trace_id:
        return Outcome("failed", None, "This answer has no MLflow trace id to attach to.")
    headers = _headers(deployment, str(delivery.idempotency_key))
    if isinstance(headers, Outcome):
        return headers
    base = deployment.effective_feedback_endpoint.rstrip("/")
    url = f"{base}/api/3.0/mlflow/traces/{trace_id}/assessments"
    created: dict[str, str] = dict(delivery.sink_state.get("assessment_ids", {}))
    overridden = _previous_assessment_ids(rating)
    outcome, total_ms = Outcome("sent", None), 0
    for key, assessment in mlflow_assessments(rating, trace_id):
        if key in created:
            continue
        if time.monotonic() > deadline:  # stay inside the claim's lease; the rest comes next try
            return Outcome("retry", outcome.status_code, "Stopped early to keep within the lease.")
        if overridden.get(key):
            assessment["overrides"] = overridden[key]
        # One key per assessment: a sink that honours keys keeps each post apart.
        key_header = uuid.uuid5(delivery.idempotency_key, key)
        outcome = _post(
            url, {"assessment": assessment}, {**headers, "Idempotency-Key": str(key_header)}
        )
        total_ms += outcome.duration_ms
        if outcome.kind != "sent":
            break
        # An id we could not read is kept empty: a later version then adds instead of overriding.
        created[key] = parse_assessment_id(outcome.body)
        delivery.sink_state = {**delivery.sink_state, "assessment_ids": created}
        Delivery.objects.filter(pk=delivery.pk).update(sink_state=delivery.sink_state)
    outcome.duration_ms = total_ms
    return outcome


def trace_id_of(request_pk: int) -> str:
    """The turn's MLflow trace id, read from the trace's `info` without loading the (possibly
    tens of MB) trace: `trace_id` in MLflow 3, `request_id` in MLflow 2; else the id an
    AgentServer returned, whose trace may not have been fetched yet."""
    ids = (
        RequestLog.objects.filter(pk=request_pk)
        .values_list("trace__info__trace_id", "trace__info__request_id", "mlflow_trace_id")
        .first()
    )
    return next((str(i) for i in ids or () if isinstance(i, str) and i), "")


def parse_assessment_id(text: str) -> str:
    try:
        return str(jsonlimits.loads(text)["assessment"]["assessment_id"])
    except (ValueError, KeyError, TypeError):
        return ""
