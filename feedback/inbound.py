"""Feedback sent to the app the way Databricks' feedback model took it (protocol.md §4.1-4.2):
`dataframe_records` (or `dataframe_split`) of {request_id, source, text_assessments,
retrieval_assessments}, each column an object or a JSON string. Each record becomes a rating of
that turn by the caller, saved and forwarded like any other (feedback.services.rating_create);
a caller allowed to relay (admins, and users with the `feedback.relay_feedback` permission) may
name another source, whose rating it then is (feedback.services.relayed_rating_create).

All or nothing: every record is checked first, and one bad record saves none of them.
"""

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from agents import selectors as agent_selectors
from agents.models import RequestLog
from feedback.models import SOURCE_TYPE_HUMAN, Rating
from feedback.services import (
    SOURCE_CONSENSUS_PREFIX,
    check_can_rate,
    rating_create,
    rating_validate,
    relayed_rating_create,
)
from reviewapp import jsonlimits, roles
from reviewapp.people import public_id

# Each record may read its answer's stored trace (to check document positions): a bounded call.
# The app's own Databricks sink sends at most DELIVERY_BATCH_SIZE (100) records a call.
MAX_RECORDS = 200
COLUMNS = {"request_id", "source", "text_assessments", "retrieval_assessments", "step_id"}


def feedback_records_save(
    *, caller: AbstractBaseUser, endpoint_name: str, body: Any
) -> list[Rating]:
    """Save every record of a Databricks feedback payload as the caller's rating, or raise
    ValidationError (each message names its record) or PermissionDenied and save nothing."""
    if not roles.can_review(caller):
        raise PermissionDenied("Only reviewers and admins may send feedback.")
    records = _records_of(body)
    checked: list[tuple[RequestLog, str | None, Any, Any]] = []
    errors: list[str] = []
    for i, record in enumerate(records):
        try:
            checked.append(_checked_record(caller, endpoint_name, record))
        except ValidationError as exc:
            errors.extend(f"dataframe_records[{i}]: {message}" for message in _messages(exc))
    if errors:
        more = [f"… and {len(errors) - 20} more."] if len(errors) > 20 else []
        raise ValidationError(errors[:20] + more)
    with transaction.atomic():
        return [
            relayed_rating_create(
                turn=turn,
                relayed_by=caller,
                source_id=relayed_for,
                text_assessments=text,
                retrieval_assessments=retrieval,
            )
            if relayed_for
            else rating_create(
                turn=turn, reviewer=caller, text_assessments=text, retrieval_assessments=retrieval
            )
            for turn, relayed_for, text, retrieval in checked
        ]


def _records_of(body: Any) -> list[dict]:
    if not isinstance(body, dict):
        raise ValidationError('Send a JSON object: {"dataframe_records": [...]}.')
    if "dataframe_records" in body:
        records = body["dataframe_records"]
    elif "dataframe_split" in body:
        records = _split_to_records(body["dataframe_split"])
    else:
        raise ValidationError(
            "The body needs dataframe_records (or dataframe_split) with one feedback record per "
            "rated answer."
        )
    if not isinstance(records, list) or not records:
        raise ValidationError("dataframe_records must be a non-empty list of records.")
    if len(records) > MAX_RECORDS:
        raise ValidationError(f"{len(records):,} records in one call; at most {MAX_RECORDS:,}.")
    return records


def _split_to_records(split: Any) -> list[dict]:
    """pandas' `split` orient: {columns: [...], data: [[...], ...], index?}."""
    if not isinstance(split, dict):
        raise ValidationError("dataframe_split must be an object with columns and data.")
    columns, rows = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not isinstance(rows, list):
        raise ValidationError("dataframe_split needs a list of columns and a list of rows.")
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        raise ValidationError("dataframe_split columns must be distinct column names (strings).")
    if any(not isinstance(row, list) or len(row) != len(columns) for row in rows):
        raise ValidationError(f"Each row of dataframe_split needs {len(columns)} values.")
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _checked_record(
    caller: AbstractBaseUser, endpoint_name: str, record: Any
) -> tuple[RequestLog, str | None, Any, Any]:
    if not isinstance(record, dict):
        raise ValidationError("must be an object.")
    unknown = sorted(set(record) - COLUMNS)
    if unknown:
        raise ValidationError(f"unknown column(s): {', '.join(map(str, unknown))}.")
    request_id = record.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise ValidationError("request_id must be the rated answer's databricks_request_id.")
    turn = (
        agent_selectors.requests_visible_to(caller)
        .select_related("deployment")
        .defer(*agent_selectors.HEAVY_COLUMNS)
        .filter(databricks_request_id=request_id)
        .first()
    )
    if turn is None:
        raise ValidationError(f"no answer {request_id!r} that you may see.")
    if turn.deployment.endpoint_name != endpoint_name:
        raise ValidationError(
            f"answer {request_id!r} came from endpoint {turn.deployment.endpoint_name!r}, "
            f"not {endpoint_name!r}."
        )
    relayed_for = _relayed_source(caller, _column(record, "source"))
    check_can_rate(caller, turn)  # a failed answer, a disabled deployment: named per record
    text = _column(record, "text_assessments")
    retrieval = _column(record, "retrieval_assessments")
    rating_validate(turn=turn, text_assessments=text, retrieval_assessments=retrieval)
    return turn, relayed_for, text, retrieval


def _column(record: dict, name: str) -> Any:
    """A column as sent: an object, or that object as a JSON string (as Databricks' chatbot
    template sends them)."""
    value = record.get(name)
    if isinstance(value, str):
        try:
            return jsonlimits.loads(value)
        except jsonlimits.JSONTooDeep as exc:
            raise ValidationError(f"{name}: {exc}") from None
        except ValueError:
            raise ValidationError(f"{name} is a string that is not JSON.") from None
    return value


def can_relay(user: AbstractBaseUser) -> bool:
    return roles.is_admin(user) or user.has_perm("feedback.relay_feedback")


def _relayed_source(caller: AbstractBaseUser, source: Any) -> str | None:
    """The source the record is relayed for, or None when it is the caller's own (no source,
    or the caller's email or username). Naming someone else needs the right to relay; without
    it the record is refused rather than recorded under a name nobody checked."""
    if source is None:
        return None
    if not isinstance(source, dict):
        raise ValidationError("source must be an object {id, type}.")
    kind = source.get("type", SOURCE_TYPE_HUMAN)
    if str(kind).lower() != SOURCE_TYPE_HUMAN:
        raise ValidationError(f'source.type {kind!r}: only "human" feedback is recorded.')
    claimed, own = source.get("id"), public_id(caller)
    if claimed in (None, "", own, caller.get_username()):
        return None
    if not isinstance(claimed, str) or len(claimed) > 254 or not claimed.strip():
        raise ValidationError("source.id must be a non-empty string of at most 254 characters.")
    if claimed.startswith(SOURCE_CONSENSUS_PREFIX):
        raise ValidationError(f"source.id may not start with {SOURCE_CONSENSUS_PREFIX!r}.")
    if not can_relay(caller):
        raise ValidationError(
            f"source.id {claimed!r} is not the token's user ({own!r}): recording feedback for "
            "others needs the permission to relay it (feedback | rating | Can send feedback for "
            "other sources)."
        )
    return claimed


def _messages(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [f"{field}: {m}" for field, ms in exc.message_dict.items() for m in ms]
    return exc.messages
