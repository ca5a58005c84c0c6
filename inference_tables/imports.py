"""Import of a Databricks request log (an inference-table export, or this app's own: the
columns of inference_tables.columns.REQUEST_LOG) into the request log of a deployment, so a
team can review what production already logged.

Idempotent on `databricks_request_id`: a row whose id is logged already is counted and left
alone. A row that cannot be used is reported with its line (JSON lines) or row number
(Parquet), and the good rows are kept. The question, the answer and the trace are read from
the raw bodies as the chat reads an agent's reply (review.mlflow_import's readers).
"""

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from agents.models import Conversation, Deployment, RequestLog
from agents.schemas import AgentReplyError, AutoAdapter
from agents.trace_outline import outline_of
from review.mlflow_import import answer_of, question_of

BATCH_ROWS = 500  # rows checked for ids already logged, and inserted, at a time
MAX_PROBLEMS = 1_000  # a file of broken rows reports this many, then counts the rest
_USABLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")  # it goes into URLs and HTML ids
_MAX_INT = 2**31 - 1


class RowProblem(ValueError):
    """Why a row cannot be imported, in words."""


@dataclass
class ImportReport:
    added: int = 0
    already_logged: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line or row, why)
    more_problems: int = 0  # past MAX_PROBLEMS

    @property
    def rejected(self) -> int:
        return len(self.problems) + self.more_problems

    def problem(self, where: int, why: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append((where, why))
        else:
            self.more_problems += 1


def import_request_log(
    deployment: Deployment, rows: Iterable[tuple[int, Any]], *, owner: AbstractBaseUser
) -> ImportReport:
    """Each (line, row) made a turn of the deployment. A row's `conversation_id` (a UUID)
    becomes a conversation of the deployment owned by `owner`, who imports them: the turns
    keep their order in it."""
    report, batch = ImportReport(), []
    for where, row in rows:
        try:
            if isinstance(row, RowProblem):  # the reader could not read it
                raise row
            batch.append((where, turn_from_row(deployment, row)))
        except RowProblem as exc:
            report.problem(where, str(exc))
        if len(batch) >= BATCH_ROWS:
            _save(batch, deployment, owner, report)
            batch = []
    _save(batch, deployment, owner, report)
    return report


def turn_from_row(deployment: Deployment, row: Any) -> RequestLog:
    """An unsaved turn made of one request-log row, or RowProblem."""
    if not isinstance(row, dict):
        raise RowProblem("A row must be an object with the request log's columns.")
    request_id = row.get("databricks_request_id")
    if not isinstance(request_id, str) or not _USABLE_ID.fullmatch(request_id):
        raise RowProblem(
            "databricks_request_id must be 1-128 letters, digits, '.', '_', ':' or '-'."
        )
    timestamp_ms = _whole(row.get("timestamp_ms"), "timestamp_ms", low=0, high=2**53)
    day = _day(row.get("date"))
    if timestamp_ms is None:
        if day is None:
            raise RowProblem("Give timestamp_ms or date.")
        timestamp_ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    if day is None:
        day = datetime.fromtimestamp(timestamp_ms / 1000, UTC).date()
    status = _whole(row.get("status_code"), "status_code", low=100, high=599) or 200
    took = row.get("execution_time_ms", row.get("execution_duration_ms"))
    request_raw, request_body = _body(row.get("request"), "request")
    response_raw, response_body = _body(row.get("response"), "response")
    turn = RequestLog(
        deployment=deployment,
        user=None,  # the question was asked elsewhere
        databricks_request_id=request_id,
        client_request_id=_text(row.get("client_request_id"), "client_request_id", 64),
        date=day,
        timestamp_ms=timestamp_ms,
        status_code=status,
        execution_time_ms=_whole(took, "execution_time_ms", low=0, high=_MAX_INT) or 0,
        request=question_of(request_body),
        custom_inputs=_custom_inputs(request_body),
        request_metadata=_metadata(row.get("request_metadata")),
        schema_version=_text(row.get("schema_version"), "schema_version", 16) or "1",
    )
    turn.keep_raw("request_raw", request_raw)
    turn.keep_raw("response_raw", response_raw)
    if status >= 400:
        turn.error = f"The agent answered HTTP {status}."
    else:
        turn.response = answer_of(response_body)
    turn.trace = _trace(row.get("trace"), response_body)
    turn.trace_outline = outline_of(turn.trace)
    turn.imported_conversation = _conversation_id(row.get("conversation_id"), turn)
    return turn


def _save(batch, deployment: Deployment, owner, report: ImportReport) -> None:
    if not batch:
        return
    try:
        _insert_new(batch, deployment, owner, report)
    except IntegrityError:  # another import of the same rows committed meanwhile
        _insert_new(batch, deployment, owner, report)


def _insert_new(batch, deployment: Deployment, owner, report: ImportReport) -> None:
    ids = [turn.databricks_request_id for _, turn in batch]
    logged = set(
        RequestLog.objects.filter(databricks_request_id__in=ids).values_list(
            "databricks_request_id", flat=True
        )
    )
    new, seen, already = [], set(), 0
    for _, turn in batch:
        if turn.databricks_request_id in logged or turn.databricks_request_id in seen:
            already += 1
            continue
        seen.add(turn.databricks_request_id)
        new.append(turn)
    with transaction.atomic():
        _link_conversations(new, deployment, owner)
        RequestLog.objects.bulk_create(new)
        # A turn's time is when it was logged, not when it was imported (the requests page
        # sorts and filters by it); `created_at` is set on insert, so it is set again here.
        for turn in new:
            turn.created_at = datetime.fromtimestamp(turn.timestamp_ms / 1000, UTC)
        RequestLog.objects.bulk_update(new, ["created_at"])
    report.added += len(new)
    report.already_logged += already


def _link_conversations(turns: list[RequestLog], deployment: Deployment, owner) -> None:
    """Each row's conversation: the deployment's conversation of that id, made (owned by the
    importer) when it does not exist; an id taken by another deployment's stays in the
    metadata instead."""
    wanted = {t.imported_conversation for t in turns if t.imported_conversation}
    if not wanted:
        return
    existing = {c.pk: c for c in Conversation.objects.filter(pk__in=wanted)}
    for turn in turns:
        conversation_id = turn.imported_conversation
        if conversation_id is None:
            continue
        conversation = existing.get(conversation_id)
        if conversation is None:
            conversation = Conversation.objects.create(
                id=conversation_id,
                deployment=deployment,
                user=owner,
                title=turn.request.strip().splitlines()[0][:200] if turn.request.strip() else "",
            )
            existing[conversation_id] = conversation
        if conversation.deployment_id == deployment.pk:
            turn.conversation = conversation
        else:
            turn.request_metadata["conversation_id"] = str(conversation_id)


def _whole(value: Any, name: str, *, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RowProblem(f"{name} must be a whole number from {low} to {high}.")
    return value


def _day(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise RowProblem(f"date {str(value)[:40]!r} is not a day (YYYY-MM-DD).") from None


def _text(value: Any, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise RowProblem(f"{name} must be text of at most {limit} characters.")
    return value


def _body(value: Any, name: str) -> tuple[str, Any]:
    """(the raw text as logged, its JSON) of `request` or `response`."""
    if value is None:
        return "", None
    if isinstance(value, str):
        try:
            return value, json.loads(value) if value.strip() else None
        except ValueError:
            raise RowProblem(f"{name} is not JSON.") from None
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False), value
    raise RowProblem(f"{name} must be the JSON body, as text or as an object.")


def _custom_inputs(request_body: Any) -> dict:
    value = request_body.get("custom_inputs") if isinstance(request_body, dict) else None
    return value if isinstance(value, dict) else {}


def _metadata(value: Any) -> dict:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RowProblem("request_metadata is not a JSON object.") from None
    if not isinstance(value, dict):
        raise RowProblem("request_metadata must be an object (a map).")
    return value


def _trace(value: Any, response_body: Any) -> dict | None:
    """The row's `trace` column, else the trace in the response's `databricks_output`."""
    if isinstance(value, str) and value.strip():
        try:
            value = json.loads(value)
        except ValueError:
            raise RowProblem("trace is not JSON.") from None
    if isinstance(value, dict) and value:
        return value
    if value not in (None, "", {}):
        raise RowProblem("trace must be an MLflow trace object.")
    if isinstance(response_body, dict):
        try:
            return AutoAdapter().parse_reply(response_body).trace
        except AgentReplyError:
            return None
    return None


def _conversation_id(value: Any, turn: RequestLog) -> uuid.UUID | None:
    """A conversation of this app has a UUID; another id is kept in the metadata."""
    if value is None or value == "":
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        turn.request_metadata["conversation_id"] = str(value)[:200]
        return None
