"""The agent the suite's LongRunningAgentServer serves (tests/support/long_running_server.py).

What is real: `databricks_ai_bridge.long_running.LongRunningAgentServer` (MLflow's AgentServer
plus background mode and retrieval), unchanged: POST /responses and /invocations (sync,
`stream`, `background`, `background`+`stream`), GET /responses/{id} (poll),
GET /responses/{id}?stream=true&starting_after=N (resume), its durable-resume machinery and its
SQLAlchemy tables (schema `agent_server`). Traces go to the suite's MLflow tracking server.

The one part replaced: Lakebase's connection. The library builds its engine with
`databricks_ai_bridge.lakebase.AsyncLakebaseSQLAlchemy`, which asks a Databricks workspace for a
Lakebase instance and short-lived credentials. `LocalPostgres` stands in for it: its `.engine`
is a plain async SQLAlchemy engine on the machine's PostgreSQL (LONG_RUNNING_DATABASE_URL, set
by the fixture). LAKEBASE_INSTANCE_NAME is set so `is_db_configured()` turns background mode on;
nothing reads its value but the replaced class.

The agent: a ResponsesAgent registered with MLflow's `@invoke()` and `@stream()`, answering
"Echo: <last user message>" (streamed as output_text deltas, then `response.output_item.done`).
`custom_inputs.delay_s` spreads that many seconds over the deltas (or before the answer, for
invoke); `custom_inputs.fail` makes it raise. Both are async: the library's background path
iterates the stream function with `async for`.

Test-only routes: GET /_test/stats, POST /_test/reset, POST /_test/cut-next-stream?after=N
(tests/support/stream_cut.py). Run with
`python -m uvicorn tests.support.long_running_server_app:app` (the fixture does): uvicorn imports
this module once, so each decorator registers once.
"""

import asyncio
import contextvars
import os
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import databricks_ai_bridge.long_running.db as long_running_db
import mlflow
from databricks_ai_bridge.long_running import LongRunningAgentServer
from mlflow.genai.agent_server import invoke, stream
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
    create_text_delta,
    create_text_output_item,
)
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.stream_cut import StreamCutter, hide_cuts_in_uvicorn_log

EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
DATABASE_URL_ENV = "LONG_RUNNING_DATABASE_URL"
POLL_INTERVAL_ENV = "LONG_RUNNING_POLL_INTERVAL_S"
ANSWER_PREFIX = "Echo: "


class LocalPostgres:
    """Stands in for `AsyncLakebaseSQLAlchemy`: the same `.engine`, on local PostgreSQL."""

    def __init__(
        self, *, pool_size: int = 10, max_overflow: int = 0, pool_pre_ping: bool = True, **_: Any
    ) -> None:
        self.engine = create_async_engine(
            os.environ[DATABASE_URL_ENV],
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=pool_pre_ping,
        )


long_running_db.AsyncLakebaseSQLAlchemy = LocalPostgres
os.environ.setdefault("LAKEBASE_INSTANCE_NAME", "local-postgres")

# Which response a background run belongs to; None for a foreground (sync or plain stream) call.
_RESPONSE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "response_id", default=None
)
RUNS: Counter[str] = Counter()  # response id -> runs of the agent function
FOREGROUND = {"runs": 0}


def _count_run() -> None:
    response_id = _RESPONSE_ID.get()
    if response_id is None:
        FOREGROUND["runs"] += 1
    else:
        RUNS[response_id] += 1


def words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text) or [text]


def _question(request: ResponsesAgentRequest) -> str:
    for item in reversed(request.input):
        message = item.model_dump()
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
    raise ValueError("The request has no user message.")


def _answer(request: ResponsesAgentRequest) -> tuple[str, float]:
    _count_run()
    custom_inputs = request.custom_inputs or {}
    if custom_inputs.get("fail"):
        raise RuntimeError("The test agent was asked to fail.")
    return ANSWER_PREFIX + _question(request), float(custom_inputs.get("delay_s") or 0)


@invoke()
async def answer(request: ResponsesAgentRequest) -> ResponsesAgentResponse:
    text, delay = _answer(request)
    if delay:
        await asyncio.sleep(delay)
    item = create_text_output_item(text, id=f"msg_{uuid.uuid4().hex}")
    return ResponsesAgentResponse(output=[item])


@stream()
async def answer_stream(request: ResponsesAgentRequest) -> AsyncIterator[ResponsesAgentStreamEvent]:
    text, delay = _answer(request)
    item_id, pieces = f"msg_{uuid.uuid4().hex}", words(text)
    for piece in pieces:
        if delay:
            await asyncio.sleep(delay / len(pieces))
        yield ResponsesAgentStreamEvent(**create_text_delta(piece, item_id))
    yield ResponsesAgentStreamEvent(
        type="response.output_item.done", item=create_text_output_item(text, id=item_id)
    )


class CountingLongRunningAgentServer(LongRunningAgentServer):
    """The library's server, telling the agent function which response it runs for (so the
    stats can count runs per response id). Wraps two private methods: test-only."""

    async def _do_background_stream(self, response_id: str, *args: Any, **kwargs: Any) -> None:
        token = _RESPONSE_ID.set(response_id)
        try:
            await super()._do_background_stream(response_id, *args, **kwargs)
        finally:
            _RESPONSE_ID.reset(token)

    async def _do_background_invoke(self, response_id: str, *args: Any, **kwargs: Any) -> None:
        token = _RESPONSE_ID.set(response_id)
        try:
            await super()._do_background_invoke(response_id, *args, **kwargs)
        finally:
            _RESPONSE_ID.reset(token)


if os.environ.get(EXPERIMENT_ENV):
    mlflow.set_experiment(os.environ[EXPERIMENT_ENV])
server = CountingLongRunningAgentServer(
    "ResponsesAgent",
    poll_interval_seconds=float(os.environ.get(POLL_INTERVAL_ENV, "1.0")),
)
cutter = StreamCutter(server.app)
REQUESTS: list[list[str]] = []


@server.app.get("/_test/stats")
async def stats() -> dict[str, Any]:
    return {
        "runs": dict(RUNS),
        "foreground_runs": FOREGROUND["runs"],
        "requests": REQUESTS,
        "streams_cut": cutter.cuts,
    }


@server.app.post("/_test/reset")
async def reset() -> dict[str, str]:
    RUNS.clear()
    FOREGROUND["runs"] = 0
    REQUESTS.clear()
    cutter.disarm()
    cutter.cuts = 0
    return {"status": "reset"}


@server.app.post("/_test/cut-next-stream")
async def cut_next_stream(after: int = 0) -> dict[str, int | None]:
    cutter.arm(after)
    return {"armed_after": cutter.armed_after}


async def app(scope, receive, send) -> None:
    """The server as uvicorn runs it: requests logged (not /_test/ ones), SSE cuttable."""
    if scope["type"] == "http" and not scope["path"].startswith("/_test/"):
        query = scope.get("query_string", b"").decode()
        REQUESTS.append([scope["method"], scope["path"] + (f"?{query}" if query else "")])
    await cutter(scope, receive, send)


hide_cuts_in_uvicorn_log()
