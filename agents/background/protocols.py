"""Where each background-capable server keeps a run, and how it says the run ended.

Databricks Agent Runtime (databricks-agentbricks 0.7.0 `DurableAgentServer`; README cites the
docs): POST {endpoint} with the client's own UUID `id` and `background: true` → 202 {id, status:
queued, status_url}; GET {endpoint}/{id} → {status: queued|active|completed|failed, output?};
GET {endpoint}/{id}/events?after=N → the SSE events numbered past N (`id: N` frames).

MLflow LongRunningAgentServer (databricks-ai-bridge 0.22.0 `databricks_ai_bridge.long_running`,
the OpenAI Responses background mode): POST {endpoint} with `background: true` → {id: resp_…,
status: in_progress}; GET {endpoint}/{id} → {status: in_progress|completed|failed, output?,
metadata.trace_id?}; GET {endpoint}/{id}?stream=true&starting_after=N → the events whose
`sequence_number` is past N (0 means all, so a resumed stream skips what it has seen).
"""

import re
import uuid
from dataclasses import dataclass
from typing import Any

from agents.models import EndpointKind

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
ACCEPTED = ("queued", "in_progress", "active")
RUN_NAMESPACE = uuid.UUID("5d7a2f0e-8d6b-4c1e-9a43-2f6b1c0e7a15")  # run ids made from turn keys
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def checked_run_id(value: Any) -> str:
    """A run id the server gave, fit for a URL path and the request log, or ValueError."""
    if not isinstance(value, str) or not _RUN_ID.fullmatch(value):
        raise ValueError("the agent named its run with no usable id")
    return value


@dataclass(frozen=True)
class RunProtocol:
    kind: str

    @property
    def streams_from_start(self) -> bool:
        """A LongRunningAgentServer keeps a run's text deltas only when it was started as a
        stream, and then answers the POST with the stream itself. The runtime answers the POST
        with the run's id and serves its events apart."""
        return self.kind == EndpointKind.MLFLOW_LONG_RUNNING

    def start_body(self, body: dict, *, stream: bool, key: str = "") -> tuple[dict, str]:
        """The POST that starts a run, and its id when the client chooses it ("" otherwise):
        the runtime's `id` is its idempotency key, so the same `key` names the same run."""
        body = {name: value for name, value in body.items() if name != "stream"}
        body["background"] = True
        if stream and self.streams_from_start:
            body["stream"] = True
        if self.kind == EndpointKind.AGENT_RUNTIME:
            run_id = str(uuid.uuid5(RUN_NAMESPACE, key) if key else uuid.uuid4())
            return {"id": run_id, **body}, run_id
        return body, ""

    def accepted_run_id(self, accepted: Any) -> str:
        """The id of a run the server accepted; ValueError when its answer is no acceptance
        (a server without background runs answers the request itself)."""
        if not isinstance(accepted, dict) or accepted.get("status") not in ACCEPTED:
            raise ValueError("not a background run's acceptance")
        return checked_run_id(accepted.get("id"))

    def status_url(self, endpoint: str, run_id: str) -> str:
        return f"{endpoint.rstrip('/')}/{run_id}"

    def events_url(self, endpoint: str, run_id: str, after: int) -> str:
        if self.kind == EndpointKind.AGENT_RUNTIME:
            return f"{self.status_url(endpoint, run_id)}/events?after={after}"
        return f"{self.status_url(endpoint, run_id)}?stream=true&starting_after={after}"

    def state(self, body: Any) -> str:
        status = body.get("status") if isinstance(body, dict) else None
        if status == "completed":
            return COMPLETED
        if status in ("failed", "cancelled", "incomplete"):
            return FAILED
        if status in ("queued", "active", "in_progress"):
            return RUNNING
        raise ValueError(f"the run's state is {status!r}, which this app does not know")

    def position(self, event_id: str, payload: Any) -> int | None:
        """Where an event sits in the run's stream, to resume after it."""
        if self.kind == EndpointKind.AGENT_RUNTIME:
            return int(event_id) if event_id.isdigit() else None
        number = payload.get("sequence_number") if isinstance(payload, dict) else None
        return number if isinstance(number, int) and not isinstance(number, bool) else None


def protocol_for(kind: str) -> RunProtocol:
    return RunProtocol(kind)
