"""Reading an MLflow AgentServer turn's trace from its tracking server, over MLflow's REST API.

An AgentServer answers with the trace id only (protocol.md §1.6) and exports the trace
afterwards: MLflow 3.17's batch span processor sends it up to
MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS (default 5 s) after the answer, spans first
(`POST /v1/traces`), then the trace's info (`POST /api/3.0/mlflow/traces`). So a trace may be
missing or half written for a few seconds; `fetch_trace` retries briefly and then says so, and
a later view asks again. Nothing here imports mlflow: the server is remote and the app only
has mlflow-skinny.

Two routes of the tracking server (mlflow/server/handlers.py, 3.17.2):
- `GET /api/3.0/mlflow/traces/{trace_id}` → `{"trace": {"trace_info": ...}}`, the TraceInfoV3
  proto as JSON: `TraceInfo.to_dict()` except `execution_duration` ("0.080s") for
  `execution_duration_ms`;
- `GET /ajax-api/3.0/mlflow/get-trace-artifact?request_id=...` → `{"spans": [...]}`, exactly
  `TraceData.to_dict()`, wherever the spans are kept (tracking store, artifact, archive). The
  public `GET /api/3.0/mlflow/traces/get` has them too, but as OTLP protos (typed attribute
  values) and only for spans kept in the tracking store.
"""

import contextlib
import logging
import re
import time
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, urlsplit

import httpx
from django.conf import settings

from agents.auth import AgentAuthError, auth_headers
from agents.client import excerpt
from agents.models import RequestLog
from agents.trace_outline import outline_of
from reviewapp import jsonlimits

logger = logging.getLogger(__name__)

TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
# The trace is usually there or seconds away: wait a little in the request, not seconds.
READY_WAIT_S = 0.4
FIRST_RETRY_S = 0.05
# MLflow 3 ids are "tr-<32 hex>", MLflow 2 ones 32 hex; no "/" (v4 ids name a Unity Catalog
# location, which an OSS tracking server does not serve).
TRACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SCHEMA_KEY, SIZE_STATS_KEY = "mlflow.trace_schema.version", "mlflow.trace.sizeStats"
UNAVAILABLE = "The trace is not available from the tracking server yet"


class TraceUnavailable(Exception):
    """The trace cannot be read from the tracking server now; asking again later may work."""


class TraceNotFound(TraceUnavailable):
    """The tracking server has no trace with this id (unknown, or not exported yet)."""


class TraceNotReady(TraceUnavailable):
    """The tracking server has part of the trace: its export is still under way."""


class TrackingServerError(TraceUnavailable):
    """The tracking server could not be reached or answered with an error or nonsense."""


def unavailable_message(exc: TraceUnavailable) -> str:
    return f"{UNAVAILABLE}: {exc}"


def trace_for_turn(turn: RequestLog) -> dict | None:
    """The turn's trace: the stored one, else, for an AgentServer turn, the one its tracking
    server has, which is then stored in the turn with its outline (traces do not change once
    written).

    None when the turn has no trace to show. Raises TraceUnavailable when the fetch failed;
    nothing is stored then, so the next call tries again.
    """
    if turn.trace is not None:
        return turn.trace
    tracking_uri = turn.deployment.mlflow_tracking_uri
    if not (turn.mlflow_trace_id and tracking_uri):
        return None
    try:
        headers = auth_headers(turn.deployment)
    except AgentAuthError as exc:
        raise TrackingServerError(f"No usable credentials for the tracking server: {exc}") from None
    try:
        trace = fetch_trace(tracking_uri, turn.mlflow_trace_id, headers=headers)
    except TraceUnavailable as exc:
        logger.info("Trace of turn %s: %s", turn.databricks_request_id, exc)
        raise
    turn.trace, turn.trace_outline = trace, outline_of(trace)
    turn.save(update_fields=["trace", "trace_outline"])
    return trace


def fetch_trace(
    tracking_uri: str,
    trace_id: str,
    *,
    headers: dict[str, str] | None = None,
    wait_s: float = READY_WAIT_S,
) -> dict:
    """The trace as `mlflow.entities.Trace.to_dict()`: {"info": ..., "data": {"spans": ...}}.

    While the server has none or part of it, asks again for up to `wait_s` seconds, then
    raises TraceNotFound or TraceNotReady; TrackingServerError when it cannot be read at all.
    """
    if not isinstance(trace_id, str) or not TRACE_ID.fullmatch(trace_id):
        raise TrackingServerError(f"{trace_id!r:.80} is not an MLflow trace id this app can read.")
    base = tracking_uri.rstrip("/")
    deadline = time.monotonic() + max(0.0, wait_s)
    pause = FIRST_RETRY_S
    timeout = httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    with httpx.Client(headers=headers or {}, timeout=timeout) as client:
        while True:
            try:
                return _read_trace(client, base, trace_id)
            except (TraceNotFound, TraceNotReady):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(pause, left))
                pause *= 2


def _read_trace(client: httpx.Client, base: str, trace_id: str) -> dict:
    answer = _get_json(client, f"{base}/api/3.0/mlflow/traces/{quote(trace_id, safe='')}", {})
    if answer is None:
        raise TraceNotFound(f"the tracking server at {_origin(base)} has no trace {trace_id}.")
    trace = answer.get("trace") if isinstance(answer, dict) else None
    trace_info = trace.get("trace_info") if isinstance(trace, dict) else None
    if not isinstance(trace_info, dict):
        raise TrackingServerError(f"{_origin(base)} answered the trace's info with no trace_info.")
    metadata = trace_info.get("trace_metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    # Spans are logged first, and create a bare info that the trace's own info replaces.
    if trace_info.get("state") == "IN_PROGRESS" or SCHEMA_KEY not in metadata:
        raise TraceNotReady(f"trace {trace_id} is still being written to {_origin(base)}.")
    data = _get_json(
        client, f"{base}/ajax-api/3.0/mlflow/get-trace-artifact", {"request_id": trace_id}
    )
    spans = data.get("spans") if isinstance(data, dict) else None
    if data is None or not spans:
        raise TraceNotReady(f"the spans of trace {trace_id} are not on {_origin(base)} yet.")
    if not isinstance(spans, list):
        raise TrackingServerError(f"{_origin(base)} answered the trace's spans with no list.")
    expected = _expected_span_count(metadata)
    if expected and len(spans) < expected:
        raise TraceNotReady(
            f"{_origin(base)} has {len(spans)} of the {expected} spans of trace {trace_id}."
        )
    return {"info": _trace_info_dict(trace_info), "data": data}


def _get_json(client: httpx.Client, url: str, params: dict) -> object | None:
    """The answer's JSON, or None for a 404; errors become TrackingServerError."""
    limit = settings.AGENT_MAX_REPLY_BYTES
    where = _origin(url)
    try:
        with client.stream("GET", url, params=params) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise TrackingServerError(
                        f"the trace on {where} is larger than {limit:,} bytes; it was refused."
                    )
                chunks.append(chunk)
    except httpx.TimeoutException:
        raise TrackingServerError(f"{where} did not answer within {TIMEOUT_S:g} s.") from None
    except httpx.HTTPError as exc:
        raise TrackingServerError(
            f"could not reach the tracking server at {where} ({type(exc).__name__})."
        ) from None
    text = b"".join(chunks).decode("utf-8", errors="replace")
    if response.status_code == 404:
        return None
    if not 200 <= response.status_code < 300:
        raise TrackingServerError(
            f"{where} answered HTTP {response.status_code}: {excerpt(' '.join(text.split()))}"
        )
    try:
        return jsonlimits.loads(text)
    except jsonlimits.JSONTooDeep as exc:
        raise TrackingServerError(f"the trace on {where} is refused: {exc}") from None
    except ValueError:
        raise TrackingServerError(f"{where} answered with something that is not JSON.") from None


def _expected_span_count(metadata: dict) -> int:
    try:
        count = jsonlimits.loads(metadata.get(SIZE_STATS_KEY) or "{}").get("num_spans", 0)
    except (ValueError, AttributeError):
        return 0
    return count if isinstance(count, int) else 0


def _trace_info_dict(trace_info: dict) -> dict:
    """The REST form of TraceInfoV3 in the shape `TraceInfo.to_dict()` gives."""
    info = dict(trace_info)
    duration = info.pop("execution_duration", None)
    if isinstance(duration, str) and duration.endswith("s"):
        with contextlib.suppress(InvalidOperation, ValueError, OverflowError):
            info["execution_duration_ms"] = int(Decimal(duration[:-1]) * 1000)
    return info


def _origin(url: str) -> str:
    # Never the path, query or user:password of a configured URL: only where it points.
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"
