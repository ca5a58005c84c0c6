"""Traces of an MLflow experiment as turns of a review session (issue 11 item 7).

The traces an agent logged to its tracking server (an AgentServer, or any agent traced into an
experiment) become RequestLog rows of the deployment, one per trace, keyed by the trace id, and
are added to the session as items. Search and reads go over MLflow's REST API
(review/mlflow_rest.py for the search, agents/tracking.py for each trace); nothing is saved
unless every trace could be read or was left out for a stated reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q

from agents import tracking
from agents.models import Deployment, RequestLog
from agents.schemas import AgentReplyError, AutoAdapter
from agents.schemas.base import text_of
from agents.trace_outline import outline_of
from agents.traces import normalize_trace
from review import services
from review.mlflow_rest import MlflowError, MlflowRest, tracking_uri_of
from review.models import ReviewSession

MAX_IMPORT = 1_000
# The trace is finished on the server (the search only lists traces whose info was logged), so
# no waiting for late spans: a trace still being written is left for the next import.
FETCH_WAIT_S = 0.0
QUESTION_KEYS = ("query", "question", "prompt", "request", "input")
ANSWER_KEYS = ("answer", "content", "response", "output", "text")


@dataclass(frozen=True)
class ImportResult:
    found: int  # traces the search matched (at most max_results)
    imported: int  # new turns made from them
    added: int  # items added to the session (new turns and turns already logged)
    skipped: int  # traces left out: still being written, or logged under another deployment


def session_import_mlflow_traces(
    *,
    session: ReviewSession,
    user: AbstractBaseUser,
    deployment: Deployment,
    experiment_id: str,
    filter_string: str = "",
    max_results: int = 100,
) -> ImportResult:
    """Search the experiment's traces with MLflow's filter syntax (e.g. `tags.topic =
    'billing'`, `attributes.status = 'OK'`), newest first, at most `max_results`; make a turn of
    the deployment for each trace not logged yet, and add all of them to the session.

    Raises ValidationError (nothing saved) when the user may not change the session, the
    deployment is not one of the session's or has no tracking server, the server cannot be
    reached or refuses the search (a bad filter string answers 400), or a trace cannot be read.
    """
    services.check_can_manage(user)
    experiment_id = str(experiment_id).strip()
    _check_request(session, deployment, experiment_id, max_results)
    try:
        with MlflowRest.for_deployment(deployment) as mlflow:
            mlflow.experiment_get(experiment_id)
            infos = mlflow.traces_search(experiment_id, filter_string.strip(), max_results)
            ids = [i["trace_id"] for i in infos if isinstance(i.get("trace_id"), str)]
            existing = _existing_turns(ids, infos)
            traces = [
                _fetch(mlflow, info)
                for info in reversed(infos)  # oldest first: the session offers them in time order
                if info.get("trace_id") in ids and info["trace_id"] not in existing
            ]
    except MlflowError as exc:
        raise ValidationError(f"The traces could not be read: {exc}") from None
    allowed = set(session.deployments.values_list("pk", flat=True))
    new_turns = [
        turn_from_trace(deployment, trace, experiment_id=experiment_id)
        for trace in traces
        if trace is not None
    ]
    skipped = traces.count(None)
    skipped += sum(1 for turn in existing.values() if turn.deployment_id not in allowed)
    keep = {t.pk for t in existing.values() if t.deployment_id in allowed}
    try:
        with transaction.atomic():
            for turn in new_turns:
                turn.save()
            added = services.items_add(
                session=session, user=user, turn_ids=sorted(keep) + [t.pk for t in new_turns]
            )
    except IntegrityError:
        raise ValidationError(
            "Another import saved some of these traces at the same time; nothing was saved by "
            "this one. Run it again."
        ) from None
    return ImportResult(found=len(ids), imported=len(new_turns), added=added, skipped=skipped)


def _check_request(
    session: ReviewSession, deployment: Deployment, experiment_id: str, max_results: int
) -> None:
    errors: dict[str, list[str]] = {}
    if not session.deployments.filter(pk=deployment.pk).exists():
        errors["deployment"] = [f"{deployment} is not one of this session's deployments."]
    elif not tracking_uri_of(deployment):
        errors["deployment"] = [f"{deployment} has no MLflow tracking server to import from."]
    if not experiment_id:
        errors["experiment_id"] = ["Give the MLflow experiment id."]
    if not isinstance(max_results, int) or not 1 <= max_results <= MAX_IMPORT:
        errors["max_results"] = [f"Give a number from 1 to {MAX_IMPORT:,}."]
    if not session.is_open:
        errors["session"] = ["This session is closed; reopen it to add turns."]
    if errors:
        raise ValidationError(errors)


def _existing_turns(ids: list[str], infos: list[dict]) -> dict[str, RequestLog]:
    """{trace id: turn} of the traces already logged here: imported before (the trace id is
    their request id), chatted through an AgentServer (`mlflow_trace_id`), or through Databricks
    serving (the trace is stored; its client request id is the Databricks request id)."""
    if not ids:
        return {}
    wanted = set(ids)
    by_client_id = {
        i["client_request_id"]: i["trace_id"]
        for i in infos
        if isinstance(i.get("client_request_id"), str) and i.get("trace_id") in wanted
    }
    rows = RequestLog.objects.filter(
        Q(databricks_request_id__in=[*ids, *by_client_id])
        | Q(mlflow_trace_id__in=ids)
        | Q(trace__info__trace_id__in=ids)
    ).values_list(
        "pk", "deployment_id", "databricks_request_id", "mlflow_trace_id", "trace__info__trace_id"
    )
    found: dict[str, RequestLog] = {}
    for pk, deployment_id, request_id, mlflow_trace_id, stored_trace_id in rows:
        turn = RequestLog(pk=pk, deployment_id=deployment_id)
        for key in (request_id, mlflow_trace_id, stored_trace_id):
            trace_id = key if key in wanted else by_client_id.get(key)
            if trace_id:
                found.setdefault(trace_id, turn)
    return found


def _fetch(mlflow: MlflowRest, info: dict) -> dict | None:
    """The whole trace, or None when the server has not finished writing it."""
    trace_id = info["trace_id"]
    if info.get("state") == "IN_PROGRESS" or not tracking.TRACE_ID.fullmatch(trace_id):
        return None
    try:
        return tracking.fetch_trace(
            mlflow.base, trace_id, headers=mlflow.headers, wait_s=FETCH_WAIT_S
        )
    except (tracking.TraceNotFound, tracking.TraceNotReady):
        return None
    except tracking.TrackingServerError as exc:
        raise MlflowError(f"trace {trace_id}: {exc}") from None


def turn_from_trace(deployment: Deployment, trace: dict, *, experiment_id: str) -> RequestLog:
    """An unsaved turn of the deployment made of a trace read from its tracking server: the
    question and answer are read from the root span's inputs and outputs."""
    info = trace.get("info") or {}
    normalized = normalize_trace(trace)
    root = normalized.roots[0] if normalized.roots else None
    inputs, outputs = (root.inputs, root.outputs) if root else (None, None)
    started = _request_time(info)
    failed = info.get("state") == "ERROR"
    turn = RequestLog(
        deployment=deployment,
        user=None,  # nobody chatted here: the agent was called elsewhere
        databricks_request_id=info["trace_id"],
        client_request_id=str(info.get("client_request_id") or "")[:64],
        mlflow_trace_id=info["trace_id"],
        date=started.date(),
        timestamp_ms=int(started.timestamp() * 1000),
        status_code=500 if failed else 200,
        execution_time_ms=max(0, min(int(info.get("execution_duration_ms") or 0), 2**31 - 1)),
        request=question_of(inputs) or str(info.get("request_preview") or ""),
        response=answer_of(outputs) or str(info.get("response_preview") or ""),
        trace=trace,
        trace_outline=outline_of(trace),
        custom_inputs=_custom_inputs(inputs),
        request_metadata={"imported_from": "mlflow", "experiment_id": experiment_id},
        error="The agent's trace ended in an error." if failed else "",
    )
    turn.keep_raw("request_raw", _as_json(inputs))
    turn.keep_raw("response_raw", _as_json(outputs))
    return turn


def question_of(inputs: Any) -> str:
    """The user's question in a root span's inputs: the last user message of `messages`
    (chat completions, ChatAgent) or `input` (ResponsesAgent), else a question-like field, else
    the only text argument."""
    if isinstance(inputs, str):
        return inputs
    if not isinstance(inputs, dict):
        return ""
    for key in ("messages", "input"):
        messages = inputs.get(key)
        if isinstance(messages, list):
            users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            if users:
                return _text(users[-1].get("content"))
    for key in QUESTION_KEYS:
        if isinstance(inputs.get(key), str):
            return inputs[key]
    texts = [v for v in inputs.values() if isinstance(v, str)]
    return texts[0] if len(texts) == 1 else ""


def answer_of(outputs: Any) -> str:
    """The answer in a root span's outputs: any agent reply the app can read (chat completions,
    ChatAgent, Responses, {content}), else an answer-like field, else the text itself."""
    if isinstance(outputs, str):
        return outputs
    if not isinstance(outputs, dict):
        return ""
    try:
        text = AutoAdapter().parse_reply(outputs).text
    except AgentReplyError:
        text = ""
    if text:
        return text
    return next((outputs[k] for k in ANSWER_KEYS if isinstance(outputs.get(k), str)), "")


def _text(content: Any) -> str:
    try:
        return text_of(content)
    except AgentReplyError:
        return ""


def _request_time(info: dict) -> datetime:
    value = info.get("request_time")
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            pass
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    return datetime.now(UTC)


def _custom_inputs(inputs: Any) -> dict:
    value = inputs.get("custom_inputs") if isinstance(inputs, dict) else None
    return value if isinstance(value, dict) else {}


def _as_json(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
