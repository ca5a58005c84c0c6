"""The two Databricks inference-table schemas this app exports (protocol.md §4.3 and the
payload table's columns), as pyarrow schemas, and each stored row turned into one of their rows.

Request log: one row per turn, `request` and `response` the raw JSON bodies exchanged with the
agent (as the payload table holds them), `trace` the MLflow trace JSON as received.
Assessment log: one row per text assessment and per retrieval assessment of every rating
version, as Databricks' `_generate_assessment_logs` exploded its payload rows; rating values
are strings there, expectations are answered under `ratings` too (the Databricks sink's form,
feedback.sinks.databricks_text_assessment), and `double_value` holds a number's value.
"""

import math
from datetime import UTC, datetime

import pyarrow as pa

from feedback.sinks import as_text, databricks_text_assessment

RATING_VALUE = pa.struct(
    [("value", pa.string()), ("double_value", pa.float64()), ("rationale", pa.string())]
)
RATINGS = pa.map_(pa.string(), RATING_VALUE)

REQUEST_LOG = pa.schema(
    [
        ("databricks_request_id", pa.string()),
        ("client_request_id", pa.string()),
        ("date", pa.date32()),
        ("timestamp_ms", pa.int64()),
        ("status_code", pa.int32()),
        ("execution_time_ms", pa.int64()),
        ("conversation_id", pa.string()),
        ("request", pa.string()),
        ("response", pa.string()),
        ("trace", pa.string()),
        ("request_metadata", pa.map_(pa.string(), pa.string())),
        ("schema_version", pa.string()),
    ]
)

ASSESSMENT_LOG = pa.schema(
    [
        ("request_id", pa.string()),
        ("step_id", pa.string()),
        (
            "source",
            pa.struct(
                [
                    ("type", pa.string()),
                    ("id", pa.string()),
                    ("tags", pa.map_(pa.string(), pa.string())),
                ]
            ),
        ),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        (
            "text_assessment",
            pa.struct(
                [
                    ("step_id", pa.string()),
                    ("ratings", RATINGS),
                    ("free_text_comment", pa.string()),
                    ("suggested_output", pa.string()),
                ]
            ),
        ),
        (
            "retrieval_assessment",
            pa.struct(
                [
                    ("position", pa.int32()),
                    ("step_id", pa.string()),
                    ("ratings", RATINGS),
                    ("free_text_comment", pa.string()),
                ]
            ),
        ),
    ]
)

# What the request-log rows are read from (RequestLog values; `trace_text` is the trace column
# as the database's own JSON text, so it is not parsed and dumped again).
REQUEST_LOG_FIELDS = (
    "pk", "databricks_request_id", "client_request_id", "date", "timestamp_ms", "status_code",
    "execution_time_ms", "conversation_id", "request_raw", "response_raw", "trace_text",
    "request_metadata", "schema_version",
)  # fmt: skip


def request_log_row(values: tuple) -> dict:
    """One request-log row from REQUEST_LOG_FIELDS' values."""
    (_, request_id, client_id, day, timestamp_ms, status, took_ms, conversation, request,
     response, trace, metadata, version) = values  # fmt: skip
    return {
        "databricks_request_id": request_id,
        "client_request_id": client_id,
        "date": day,
        "timestamp_ms": timestamp_ms,
        "status_code": status,
        "execution_time_ms": took_ms,
        "conversation_id": str(conversation) if conversation else None,
        "request": request,
        "response": response,
        "trace": trace,
        "request_metadata": {key: _text(value) for key, value in (metadata or {}).items()},
        "schema_version": version,
    }


# What the assessment-log rows are read from (Rating values, the turn's id through its FK).
ASSESSMENT_LOG_FIELDS = (
    "pk", "request__databricks_request_id", "source_type", "source_id", "created_at",
    "text_assessment", "retrieval_assessments",
)  # fmt: skip


def assessment_log_rows(values: tuple) -> list[dict]:
    """A rating version's rows from ASSESSMENT_LOG_FIELDS' values: its text assessment's,
    then one per retrieval assessment."""
    _, request_id, source_type, source_id, created_at, text_assessment, documents = values
    common = {
        "request_id": request_id,
        "source": {"type": source_type, "id": source_id, "tags": {}},
        "timestamp": created_at.astimezone(UTC),
    }
    rows = []
    text = databricks_text_assessment(text_assessment)
    if text:
        rows.append(
            {
                **common,
                "step_id": None,
                "text_assessment": {
                    "step_id": None,
                    "ratings": _ratings(text.get("ratings", {})),
                    "free_text_comment": text.get("free_text_comment"),
                    "suggested_output": text.get("suggested_output"),
                },
                "retrieval_assessment": None,
            }
        )
    for document in documents:
        rows.append(
            {
                **common,
                "step_id": document.get("step_id"),
                "text_assessment": None,
                "retrieval_assessment": {
                    "position": document.get("position"),
                    "step_id": document.get("step_id"),
                    "ratings": _ratings(document.get("ratings", {})),
                    "free_text_comment": document.get("free_text_comment"),
                },
            }
        )
    return rows


def _ratings(given: dict) -> dict:
    """Values as text (a list as its JSON), as Databricks' logs hold them."""
    return {
        name: {
            "value": _text(rating.get("value")),
            "double_value": _number(rating.get("value")),
            "rationale": rating.get("rationale"),
        }
        for name, rating in given.items()
    }


def _number(value) -> float | None:
    """A numeric answer's value as a double (Databricks' `double_value`); None otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value) -> str | None:
    return None if value is None else as_text(value)


def plain(value):
    """A row's value for JSON lines and CSV: dates and times as ISO 8601 text."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
