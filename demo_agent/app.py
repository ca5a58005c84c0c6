"""The HTTP side: Databricks Model Serving routes, the feedback model, and test knobs.

`create_app(config)` builds a Starlette app, so tests may also run it in-process. The endpoint's
name picks the schema it speaks (schemas.py). Waiting (latency, cold start, simulated delays,
pauses between streamed chunks) is `asyncio.sleep`: a thousand requests in flight cost a
thousand coroutines, not a thousand threads. The agent run itself is quick and runs inline.
"""

import asyncio
import random
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from demo_agent.agent import run_agent
from demo_agent.auth import TokenAuthMiddleware
from demo_agent.config import AgentConfig, Knobs, knobs_dict, knobs_updated
from demo_agent.errors import ApiError, api_error_response, error_response
from demo_agent.feedback import FeedbackLog
from demo_agent.schema_requests import parse_turn_request
from demo_agent.schemas import TASKS, schema_for_endpoint
from demo_agent.streams import malformed_stream_response, stream_response, too_deep_reply
from demo_agent.validation import parse_feedback_records, parse_json_object

MAX_REQUEST_ID_LENGTH = 256
RETRY_AFTER = {429: "1", 503: "1"}  # what real endpoints add when they shed load


class ColdStart:
    """Scale-to-zero: the first serving request after start (or after re-arming) waits; requests
    arriving during the warm-up wait on the same event instead of starting their own."""

    def __init__(self) -> None:
        self.warm = False
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    async def wait(self, seconds: float) -> None:
        if self.warm:
            return
        if seconds <= 0:
            self.warm = True
            return
        if self._event is None:
            self._event = asyncio.Event()
            self._task = asyncio.create_task(self._warm_up(seconds, self._event))
        await self._event.wait()

    async def _warm_up(self, seconds: float, event: asyncio.Event) -> None:
        await asyncio.sleep(seconds)
        if event is self._event:
            self.warm = True
        event.set()

    def rearm(self, seconds: float) -> None:
        """Called when cold_start_s is set at run time: > 0 makes the agent cold again."""
        if self._event is not None and not self._event.is_set():
            self._event.set()  # release anyone waiting on the old warm-up
            if self._task is not None:
                self._task.cancel()
        self._event = None
        self.warm = seconds <= 0


@dataclass
class DemoState:
    config: AgentConfig
    feedback_log: FeedbackLog
    rng: random.Random
    cold_start: ColdStart = field(default_factory=ColdStart)
    malformed_count: int = 0  # alternates the kind of garbage malformed_rate produces

    @property
    def knobs(self) -> Knobs:
        return self.config.knobs

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def next_malformed_kind(self) -> str:
        self.malformed_count += 1
        return "not_json" if self.malformed_count % 2 else "wrong_shape"

    async def serving_delay(self) -> None:
        """What every serving request waits before the endpoint looks at it."""
        await self.cold_start.wait(self.knobs.cold_start_s)
        if self.knobs.latency_ms > 0:
            await asyncio.sleep(self.knobs.latency_ms / 1000)


def _state(request: Request) -> DemoState:
    return request.app.state.demo


def _request_id(request: Request) -> str:
    """The caller's X-Request-Id when given (MLflow's serving code reads that header too), else
    a fresh uuid4."""
    given = request.headers.get("x-request-id", "").strip()
    if len(given) > MAX_REQUEST_ID_LENGTH:
        raise ApiError(400, f"X-Request-Id is longer than {MAX_REQUEST_ID_LENGTH} characters")
    return given or str(uuid.uuid4())


def malformed_response(kind: str, request_id: str, stream: bool = False) -> Response:
    """A 200 whose body a client cannot use: what a broken model or proxy can send."""
    if stream:
        return malformed_stream_response(kind, request_id)
    if kind == "not_json":
        # Labelled JSON on purpose: clients must not trust the content type.
        return Response(
            "<html><body>upstream hiccup: this is not JSON</body></html>",
            media_type="application/json",
            headers={"x-request-id": request_id},
        )
    if kind == "too_deep":
        return Response(
            too_deep_reply(request_id),
            media_type="application/json",
            headers={"x-request-id": request_id},
        )
    body = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "result": "the answer went missing: this reply has no `choices`",
        "databricks_output": {"databricks_request_id": request_id},
    }
    return JSONResponse(body, headers={"x-request-id": request_id})


async def invocations(request: Request) -> Response:
    state = _state(request)
    endpoint = request.path_params["name"]
    await state.serving_delay()
    schema = schema_for_endpoint(endpoint)
    try:
        body = await request.body()
    except ClientDisconnect:
        return _hung_up(request, "a caller")  # a killed batch-run worker, a client's timeout
    chat = parse_turn_request(parse_json_object(body), schema)
    request_id = _request_id(request)
    if chat.simulate.delay_ms > 0:
        await asyncio.sleep(chat.simulate.delay_ms / 1000)
    if chat.simulate.status is not None:
        status = chat.simulate.status
        raise ApiError(
            status,
            f"Simulated HTTP {status} (custom_inputs.simulate.status).",
            headers=({"Retry-After": RETRY_AFTER[status]} if status in RETRY_AFTER else None),
        )
    if chat.simulate.malformed is not None:
        return malformed_response(chat.simulate.malformed, request_id, chat.stream)
    if state.roll(state.knobs.error_rate):
        raise ApiError(500, f"Simulated model failure (error_rate) for request {request_id}.")
    if state.roll(state.knobs.malformed_rate):
        return malformed_response(state.next_malformed_kind(), request_id, chat.stream)

    reply, trace = run_agent(chat, request_id, endpoint)
    if chat.stream:
        delay_ms = chat.simulate.chunk_delay_ms
        if delay_ms is None:
            delay_ms = state.knobs.stream_chunk_delay_ms
        wanted_trace = trace if chat.return_trace else None
        return stream_response(schema, reply, request_id, wanted_trace, delay_ms, chat.simulate)
    output: dict[str, Any] = {"databricks_request_id": request_id}
    if chat.return_trace:
        output["trace"] = trace
    reply["databricks_output"] = output
    return JSONResponse(reply, headers={"x-request-id": request_id})


def _hung_up(request: Request, who: str) -> Response:
    """A caller gone before its body arrived: a line in the log, not a traceback."""
    print(
        f"demo agent: {who} hung up before its body arrived ({request.url.path})",
        file=sys.stderr,
        flush=True,
    )
    return Response(status_code=400)


async def feedback_invocations(request: Request) -> Response:
    state = _state(request)
    await state.serving_delay()
    # A sink that is down answers before reading anything, and so logs nothing.
    if state.roll(state.knobs.feedback_error_rate):
        raise ApiError(
            503,
            "Simulated: the feedback model is temporarily unavailable (feedback_error_rate).",
            headers={"Retry-After": RETRY_AFTER[503]},
        )
    try:
        body = await request.body()
    except ClientDisconnect:
        # The sink's caller gave up mid-body (its timeout, a killed worker): nothing was
        # received, so nothing is logged; it sends the record again. Not the agent's error.
        return _hung_up(request, "a feedback caller")
    records = parse_feedback_records(parse_json_object(body))
    idempotency_key = request.headers.get("idempotency-key")
    await state.feedback_log.append(request.path_params["name"], records, idempotency_key)
    return JSONResponse({"predictions": {"result": "ok"}})


async def feedback_records(request: Request) -> Response:
    entries = await _state(request).feedback_log.entries(request.path_params["name"])
    return JSONResponse({"records": entries})


async def endpoint_detail(request: Request) -> Response:
    """Enough of Databricks' ServingEndpointDetailed for health checks and auto-detection; the
    `task` follows the schema the name selects (legacy endpoints report none)."""
    name = request.path_params["name"]
    task = TASKS[schema_for_endpoint(name)]
    return JSONResponse(
        {
            "name": name,
            "creator": "demo-agent",
            "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
            **({"task": task} if task else {}),
            "config": {
                "served_entities": [
                    {
                        "name": f"{name}_1",
                        "entity_name": f"demo.agents.{name}",
                        "entity_version": "1",
                    },
                    {
                        "name": "feedback",
                        "entity_name": "demo.agents.feedback",
                        "entity_version": "1",
                    },
                ],
                "traffic_config": {
                    "routes": [
                        {"served_model_name": f"{name}_1", "traffic_percentage": 100},
                        {"served_model_name": "feedback", "traffic_percentage": 0},
                    ]
                },
            },
        }
    )


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def demo_config(request: Request) -> Response:
    state = _state(request)
    if request.method == "POST":
        changes = parse_json_object(await request.body())
        try:
            state.config.knobs = knobs_updated(state.knobs, changes)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        if "cold_start_s" in changes:
            state.cold_start.rearm(state.knobs.cold_start_s)
    return JSONResponse(knobs_dict(state.knobs))


async def demo_feedback_clear(request: Request) -> Response:
    await _state(request).feedback_log.clear()
    return JSONResponse({"result": "ok"})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return api_error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (no such path, wrong method) in Databricks' JSON shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path}."
        return error_response(404, message, "ENDPOINT_NOT_FOUND")
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    return error_response(500, f"Unexpected error in the demo agent: {exc!r}")


def create_app(config: AgentConfig | None = None) -> Starlette:
    config = config or AgentConfig()
    prefix = "/serving-endpoints/{name}"
    routes = [
        Route("/health", health, methods=["GET"]),
        Route(f"{prefix}/invocations", invocations, methods=["POST"]),
        # The same turn for OpenAI clients given `{prefix}` as their base URL (they append
        # /chat/completions): bench/proxy.py routes LiteLLM's proxy to the agent this way.
        Route(f"{prefix}/chat/completions", invocations, methods=["POST"]),
        # Listed before the generic served-model route, which would otherwise match "feedback".
        Route(
            f"{prefix}/served-models/feedback/invocations", feedback_invocations, methods=["POST"]
        ),
        Route(f"{prefix}/served-models/feedback/records", feedback_records, methods=["GET"]),
        Route(f"{prefix}/served-models/{{entity}}/invocations", invocations, methods=["POST"]),
        Route("/api/2.0/serving-endpoints/{name}", endpoint_detail, methods=["GET"]),
        Route("/_demo/config", demo_config, methods=["GET", "POST"]),
        Route("/_demo/feedback/clear", demo_feedback_clear, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(TokenAuthMiddleware, token=config.token)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
    app.state.demo = DemoState(
        config=config,
        feedback_log=FeedbackLog(config.feedback_log),
        rng=random.Random(config.seed),
    )
    return app
