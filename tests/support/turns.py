"""A RequestLog row as a finished chat turn leaves it, for tests that need a turn without an
agent call (the MLflow sink, traces read from a tracking server)."""

import time
import uuid
from datetime import UTC, datetime

from agents.models import RequestLog


def logged_turn(deployment, user, **fields) -> RequestLog:
    now = time.time()
    values = {
        "client_request_id": str(uuid.uuid4()),
        "databricks_request_id": str(uuid.uuid4()),
        "date": datetime.fromtimestamp(now, UTC).date(),
        "timestamp_ms": int(now * 1000),
        "status_code": 200,
        "execution_time_ms": 40,
        "request": "What is MLflow tracing?",
        "response": "MLflow tracing records each step of an agent as a span [1].",
        **fields,
    }
    return RequestLog.objects.create(deployment=deployment, user=user, **values)
