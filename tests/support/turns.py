"""Chat turns for tests: `chat_turn` sends one through the turn service from synchronous code,
`logged_turn` makes the RequestLog row a finished turn leaves, without an agent call (the
MLflow sink, traces read from a tracking server)."""

import time
import uuid
from datetime import UTC, datetime

from asgiref.sync import async_to_sync

from agents import turns
from agents.models import RequestLog
from agents.turns.start import UNSET


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


def chat_turn(
    *,
    deployment,
    user,
    message: str,
    conversation=None,
    custom_inputs=UNSET,
    history: list[dict[str, str]] | None = None,
    idempotency_key: str = "",
) -> RequestLog:
    """One turn through the turn service from synchronous code (tests, benchmarks): bad input
    raises ValidationError and sends and logs nothing; a failed call is a logged turn whose
    `error` is set."""

    async def run() -> RequestLog:
        started = await turns.turn_start(
            user=user,
            deployment_id=deployment.pk,
            message=message,
            custom_inputs=custom_inputs,
            conversation_id=conversation.pk if conversation is not None else None,
            history=history,
            idempotency_key=idempotency_key,
        )
        return await turns.send_turn(started)  # its agent session closes with the turn

    return async_to_sync(run)()
