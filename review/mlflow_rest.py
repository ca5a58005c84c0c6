"""The MLflow tracking server's REST API, as review sessions use it (plain HTTP, no mlflow import:
the app has only mlflow-skinny, and the server may run another version).

Routes of mlflow 3.17.2 (mlflow/server/handlers.py `get_endpoints`; mlflow-notes.md):
- `GET  /api/2.0/mlflow/experiments/get?experiment_id=`
- `POST /api/3.0/mlflow/traces/search` {locations: [{type: MLFLOW_EXPERIMENT, mlflow_experiment:
  {experiment_id}}], filter, max_results ≤ 500, order_by, page_token} → {traces, next_page_token}
- `POST /api/3.0/mlflow/traces/batchGetInfos` {trace_ids, experiment_ids} → {trace_infos}
- `label-schemas/get-by-name` (GET), `create` (POST), `update` (PATCH)
- `review-queues/get|get-by-name` (GET), `create|update` (POST), `items/add|set-status` (POST),
  `items/list` (GET)
- `datasets/search|create` (POST), `datasets/{id}/records` (POST: upsert by the inputs' hash)

Errors are MlflowError: `transient` for no answer, 5xx and 429 (asking again later may work);
MlflowNotFound for a 404.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import httpx

from agents.auth import AgentAuthError, auth_headers
from agents.client import excerpt
from agents.models import Deployment, FeedbackSink
from reviewapp import jsonlimits

TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 5.0
SEARCH_PAGE = 500  # the most traces/search answers per page
BATCH = 100  # trace ids per batchGetInfos or items/add call
LIST_PAGE = 1000
MAX_QUEUE_USERS = 10  # mlflow/genai/review_queues/validation.py MAX_ASSIGNED_USERS
MAX_ANSWER_BYTES = 50_000_000


class MlflowError(Exception):
    def __init__(self, message: str, *, status_code: int | None = None, transient: bool = False):
        super().__init__(message)
        self.status_code = status_code
        self.transient = transient


class MlflowNotFound(MlflowError):
    pass


def tracking_uri_of(deployment: Deployment) -> str:
    """The tracking server a deployment's traces (and assessments) are on, or ""."""
    if deployment.mlflow_tracking_uri:
        return deployment.mlflow_tracking_uri
    if deployment.effective_feedback_sink == FeedbackSink.MLFLOW:
        return deployment.effective_feedback_endpoint
    return ""


def origin(url: str) -> str:
    # Only where it points: never the path, query or user:password of a configured URL.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def experiment_location(experiment_id: str) -> dict:
    return {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}


class MlflowRest:
    """One tracking server, with the deployment's credentials; use as a context manager."""

    def __init__(self, tracking_uri: str, headers: dict[str, str] | None = None):
        self.base = tracking_uri.rstrip("/")
        self.where = origin(tracking_uri)
        self.headers = dict(headers or {})
        timeout = httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        self.client = httpx.Client(headers=self.headers, timeout=timeout, follow_redirects=False)

    @classmethod
    def for_deployment(cls, deployment: Deployment, tracking_uri: str = "") -> MlflowRest:
        uri = tracking_uri or tracking_uri_of(deployment)
        if not uri:
            raise MlflowError(f"{deployment} has no MLflow tracking server.")
        try:
            return cls(uri, auth_headers(deployment))
        except AgentAuthError as exc:
            raise MlflowError(f"No usable credentials for the tracking server: {exc}") from None

    def __enter__(self) -> MlflowRest:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()

    def call(self, method: str, path: str, *, params: dict | None = None, body=None) -> dict:
        try:
            response = self.client.request(method, self.base + path, params=params, json=body)
        except httpx.TimeoutException:
            raise MlflowError(f"{self.where} did not answer in time.", transient=True) from None
        except httpx.HTTPError as exc:
            raise MlflowError(
                f"Could not reach the MLflow tracking server at {self.where} "
                f"({type(exc).__name__}).",
                transient=True,
            ) from None
        code = response.status_code
        if len(response.content) > MAX_ANSWER_BYTES:
            raise MlflowError(f"{self.where} answered with more than {MAX_ANSWER_BYTES:,} bytes.")
        try:
            answer = jsonlimits.loads(response.text) if response.content else {}
        except ValueError:
            answer = None
        if not 200 <= code < 300:
            message = answer.get("message") if isinstance(answer, dict) else None
            detail = message or excerpt(" ".join(response.text.split()))
            error = MlflowNotFound if code == 404 else MlflowError
            raise error(
                f"MLflow at {self.where} answered HTTP {code}: {detail}",
                status_code=code,
                transient=code >= 500 or code == 429,
            )
        if not isinstance(answer, dict):
            raise MlflowError(f"{self.where} answered {path} with something that is not JSON.")
        return answer

    # --- experiments and traces -----------------------------------------------------------------

    def experiment_get(self, experiment_id: str) -> dict:
        try:
            answer = self.call(
                "GET", "/api/2.0/mlflow/experiments/get", params={"experiment_id": experiment_id}
            )
        except MlflowNotFound:
            raise MlflowNotFound(f"{self.where} has no experiment {experiment_id}.") from None
        experiment = answer.get("experiment") or {}
        if experiment.get("lifecycle_stage") == "deleted":
            raise MlflowError(f"Experiment {experiment_id} on {self.where} is deleted.")
        return experiment

    def traces_search(self, experiment_id: str, filter_string: str, limit: int) -> list[dict]:
        """Trace infos of the experiment that match the filter, newest first, at most `limit`."""
        found: list[dict] = []
        token = ""
        while len(found) < limit:
            body = {
                "locations": [experiment_location(experiment_id)],
                "max_results": min(SEARCH_PAGE, limit - len(found)),
                "order_by": ["timestamp_ms DESC"],
            }
            if filter_string:
                body["filter"] = filter_string
            if token:
                body["page_token"] = token
            answer = self.call("POST", "/api/3.0/mlflow/traces/search", body=body)
            found.extend(t for t in answer.get("traces") or [] if isinstance(t, dict))
            token = answer.get("next_page_token") or ""
            if not token:
                break
        return found[:limit]

    def traces_in_experiment(self, trace_ids: list[str], experiment_id: str) -> set[str]:
        """Those of these traces that the experiment has."""
        present: set[str] = set()
        for chunk in _chunks(trace_ids, BATCH):
            answer = self.call(
                "POST",
                "/api/3.0/mlflow/traces/batchGetInfos",
                body={"trace_ids": chunk, "experiment_ids": [experiment_id]},
            )
            present.update(i.get("trace_id") for i in answer.get("trace_infos") or [])
        return present

    # --- label schemas --------------------------------------------------------------------------

    def label_schema_by_name(self, experiment_id: str, name: str) -> dict | None:
        params = {"experiment_id": experiment_id, "name": name}
        try:
            return self.call("GET", "/api/3.0/mlflow/label-schemas/get-by-name", params=params)[
                "label_schema"
            ]
        except MlflowNotFound:
            return None

    def label_schema_create(self, body: dict) -> dict:
        return self.call("POST", "/api/3.0/mlflow/label-schemas/create", body=body)["label_schema"]

    def label_schema_update(self, body: dict) -> dict:
        return self.call("PATCH", "/api/3.0/mlflow/label-schemas/update", body=body)["label_schema"]

    # --- review queues --------------------------------------------------------------------------

    def queue_get(self, queue_id: str) -> dict | None:
        try:
            return self.call(
                "GET", "/api/3.0/mlflow/review-queues/get", params={"queue_id": queue_id}
            )["review_queue"]
        except MlflowNotFound:
            return None

    def queue_by_name(self, experiment_id: str, name: str) -> dict | None:
        params = {"experiment_id": experiment_id, "name": name}
        try:
            return self.call("GET", "/api/3.0/mlflow/review-queues/get-by-name", params=params)[
                "review_queue"
            ]
        except MlflowNotFound:
            return None

    def queue_create(self, body: dict) -> dict:
        return self.call("POST", "/api/3.0/mlflow/review-queues/create", body=body)["review_queue"]

    def queue_update(self, body: dict) -> dict:
        return self.call("POST", "/api/3.0/mlflow/review-queues/update", body=body)["review_queue"]

    def items_add(self, queue_id: str, trace_ids: list[str]) -> None:
        """Attach traces (idempotent: an attached item keeps its status)."""
        for chunk in _chunks(trace_ids, BATCH):
            body = {"queue_id": queue_id, "item_type": "TRACE", "item_ids": chunk}
            self.call("POST", "/api/3.0/mlflow/review-queues/items/add", body=body)

    def items_list(self, queue_id: str, status: str) -> Iterator[dict]:
        token = ""
        while True:
            params = {"queue_id": queue_id, "status": status, "max_results": LIST_PAGE}
            if token:
                params["page_token"] = token
            answer = self.call("GET", "/api/3.0/mlflow/review-queues/items/list", params=params)
            yield from answer.get("items") or []
            token = answer.get("next_page_token") or ""
            if not token:
                return

    def item_set_status(self, queue_id: str, trace_id: str, status: str, completed_by: str):
        body = {"queue_id": queue_id, "item_id": trace_id, "status": status}
        if status != "PENDING":  # reopening clears who completed it, and must not name anyone
            body["completed_by"] = completed_by
        return self.call("POST", "/api/3.0/mlflow/review-queues/items/set-status", body=body)

    # --- evaluation datasets --------------------------------------------------------------------

    def dataset_by_name(self, experiment_id: str, name: str) -> dict | None:
        body = {
            "experiment_ids": [experiment_id],
            "filter_string": f"name = '{name}'",  # the caller refuses names with a quote
            "max_results": 1,
        }
        answer = self.call("POST", "/api/3.0/mlflow/datasets/search", body=body)
        return next(iter(answer.get("datasets") or []), None)

    def dataset_create(self, experiment_id: str, name: str) -> dict:
        body = {"name": name, "experiment_ids": [experiment_id]}
        return self.call("POST", "/api/3.0/mlflow/datasets/create", body=body)["dataset"]

    def records_upsert(self, dataset_id: str, records: list[dict]) -> tuple[int, int]:
        """(inserted, updated): records with the same inputs as a stored one update it."""
        # The records travel as one JSON string inside the JSON body.
        answer = self.call(
            "POST",
            f"/api/3.0/mlflow/datasets/{quote(dataset_id, safe='')}/records",
            body={"records": json.dumps(records, ensure_ascii=False)},
        )
        return int(answer.get("inserted_count") or 0), int(answer.get("updated_count") or 0)


def _chunks(values: list, size: int) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
