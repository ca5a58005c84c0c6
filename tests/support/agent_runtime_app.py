"""A real Databricks Agent Runtime server behind a fake Databricks Apps ingress, with a fake
workspace OAuth server beside it (tests/support/agent_runtime.py runs it).

What is real: `databricks_agentkit.runtime.DurableAgentServer` from databricks-agentbricks with
its process-local `InMemoryRuntimeStore` (what `agentbricks dev` uses; a deployed app gets a
Lakebase store with the same HTTP API): POST /api/invocations (sync, `stream`, `background`),
GET /api/invocations/{id}, GET /api/invocations/{id}/events?after=N. The agent's trace is made
by the real MLflow library, taken from MLflow's Databricks-serving buffer with `pop_trace`, the
way demo_agent/agent.py does it.

What is fake, because it is Databricks' infrastructure and not a library (`FakeAppsIngress`):
- the Apps ingress: every /api/* request needs `Authorization: Bearer <token>` with a token the
  fake OAuth endpoint issued and that has not expired; a personal access token (`dapi...`) gets
  401 saying Apps do not take them; none, unknown or expired: 401;
- the workspace's OAuth: GET /.well-known/databricks-config (databricks-sdk >= 0.15x reads its
  `oidc_endpoint` first), GET /oidc/.well-known/oauth-authorization-server, and
  POST /oidc/v1/token (client_credentials with HTTP Basic client id and secret);
- test-only routes under /_test/: health, stats, reset, token-lifetime, cut-next-stream.

The agent echoes: "Echo: <last user message>", emitted word by word as `delta` events, then
returns {"output": [{"role": "assistant", "content": ...}], "status": "completed",
"databricks_output": {"trace": <MLflow trace dict>}}. `custom_inputs.delay_s` spreads that many
seconds over the deltas; `custom_inputs.fail` makes it raise before answering.

Configuration (set by the fixture): FAKE_WORKSPACE_CLIENT_ID, FAKE_WORKSPACE_CLIENT_SECRET,
FAKE_WORKSPACE_TOKEN_LIFETIME_S (default 3600).
"""

import os

# MLflow picks its trace exporter when first imported: Databricks Model Serving's path buffers
# finished traces by request id for `pop_trace` (as demo_agent/_mlflow_env.py sets it up).
os.environ.setdefault("IS_IN_DB_MODEL_SERVING_ENV", "true")
os.environ.setdefault("ENABLE_MLFLOW_TRACING", "true")
os.environ["MLFLOW_MODEL_CATALOG_URI"] = ""
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # else the serving exporter ships traces away too

import asyncio
import base64
import re
import secrets
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

import mlflow
from databricks_agentkit.runtime.app import DurableAgentServer
from databricks_agentkit.runtime.auth import InvocationAuthPolicy
from databricks_agentkit.runtime.store import InMemoryRuntimeStore
from databricks_agentkit.runtime.types import InvocationContext
from mlflow.entities import SpanType
from mlflow.pyfunc.context import Context, set_prediction_context
from mlflow.tracing.export.inference_table import pop_trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.stream_cut import StreamCutter, hide_cuts_in_uvicorn_log

CLIENT_ID_ENV = "FAKE_WORKSPACE_CLIENT_ID"
CLIENT_SECRET_ENV = "FAKE_WORKSPACE_CLIENT_SECRET"
TOKEN_LIFETIME_ENV = "FAKE_WORKSPACE_TOKEN_LIFETIME_S"
DEFAULT_TOKEN_LIFETIME_S = 3600
PAT_PREFIX = "dapi"
WORKSPACE_ID = "1234567890123456"
PAT_REFUSED = (
    "Personal access tokens are not accepted for Databricks Apps: authenticate with an OAuth "
    "access token (e.g. a service principal's client credentials)."
)
AGENT_SPAN = "echo_agent"

# How many times the invoke hook ran, per invocation id.
RUNS: Counter[str] = Counter()


def words(text: str) -> list[str]:
    """`text` in one-word pieces, whitespace kept, so joining them gives `text` back."""
    return re.findall(r"\S+\s*", text) or [text]


def _messages_and_inputs(request: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if isinstance(request, list):  # a bare message list
        return request, {}
    if isinstance(request, dict):
        return list(request.get("messages") or []), dict(request.get("custom_inputs") or {})
    raise TypeError("input must be {'messages': [...], 'custom_inputs': {...}} or a message list")


def _question(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
    raise ValueError("The input has no user message.")


server = DurableAgentServer(
    runtime_store=InMemoryRuntimeStore(),
    # No agent.toml here: no request-user tools, so no forwarded user token is needed.
    auth_policy=InvocationAuthPolicy(),
    allowed_origins=[],
)


@server.invoke
async def echo(request: Any, context: InvocationContext) -> dict[str, Any]:
    RUNS[context.invocation_id] += 1
    messages, custom_inputs = _messages_and_inputs(request)
    if custom_inputs.get("fail"):
        raise RuntimeError("The test agent was asked to fail.")
    text = "Echo: " + _question(messages)
    pieces = words(text)
    pause = float(custom_inputs.get("delay_s") or 0) / len(pieces)
    # The request id keys MLflow's serving buffer (and becomes the trace's client_request_id).
    request_id = context.invocation_id
    try:
        with (
            set_prediction_context(Context(request_id=request_id)),
            mlflow.start_span(name=AGENT_SPAN, span_type=SpanType.AGENT) as root,
        ):
            root.set_inputs(request)
            with mlflow.start_span(name="compose_answer", span_type=SpanType.CHAT_MODEL) as llm:
                llm.set_inputs({"messages": messages})
                for piece in pieces:
                    if pause:
                        await asyncio.sleep(pause)
                    await context.emit({"type": "delta", "content": piece})
                llm.set_outputs({"role": "assistant", "content": text})
            output = [{"role": "assistant", "content": text}]
            root.set_outputs({"output": output})
    finally:
        # Always pop: the buffer would otherwise keep every trace until its TTL.
        trace = pop_trace(request_id)
    return {"output": output, "status": "completed", "databricks_output": {"trace": trace}}


class FakeWorkspace:
    """The fake OAuth server's and ingress's state: issued tokens, counters, the request log."""

    def __init__(self) -> None:
        self.client_id = os.environ.get(CLIENT_ID_ENV, "test-client-id")
        self.client_secret = os.environ.get(CLIENT_SECRET_ENV, "test-client-secret")
        self.default_lifetime_s = int(os.environ.get(TOKEN_LIFETIME_ENV, DEFAULT_TOKEN_LIFETIME_S))
        self.lifetime_s = self.default_lifetime_s
        self.tokens: dict[str, float] = {}  # access token -> expiry (time.time())
        self.tokens_issued = 0
        self.requests: list[list[str]] = []

    def issue(self) -> tuple[str, int]:
        token = f"fake-oauth-{secrets.token_urlsafe(24)}"
        self.tokens[token] = time.time() + self.lifetime_s
        self.tokens_issued += 1
        return token, self.lifetime_s

    def reset(self) -> None:
        self.tokens_issued = 0
        self.requests.clear()
        self.lifetime_s = self.default_lifetime_s
        RUNS.clear()


workspace = FakeWorkspace()
cutter = StreamCutter(server)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def host_metadata(request: Request) -> JSONResponse:
    # databricks-sdk 0.156 resolves its OAuth discovery URL from this document's oidc_endpoint.
    return JSONResponse(
        {"oidc_endpoint": f"{_base_url(request)}/oidc", "workspace_id": WORKSPACE_ID}
    )


async def oauth_metadata(request: Request) -> JSONResponse:
    base = _base_url(request)
    return JSONResponse(
        {
            "issuer": f"{base}/oidc",
            "authorization_endpoint": f"{base}/oidc/v1/authorize",
            "token_endpoint": f"{base}/oidc/v1/token",
            "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
            "scopes_supported": ["all-apis", "offline_access"],
        }
    )


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(value).decode().partition(":")
    except ValueError:
        return None
    return client_id, secret


async def token(request: Request) -> JSONResponse:
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
    credentials = _basic_credentials(request) or (
        form.get("client_id", ""),
        form.get("client_secret", ""),
    )
    if credentials != (workspace.client_id, workspace.client_secret):
        return JSONResponse(
            {"error": "invalid_client", "error_description": "Client authentication failed"},
            status_code=401,
        )
    if form.get("grant_type") != "client_credentials":
        return JSONResponse(
            {"error": "unsupported_grant_type", "error_description": "Use client_credentials"},
            status_code=400,
        )
    access_token, lifetime = workspace.issue()
    return JSONResponse(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": form.get("scope", "all-apis"),
        }
    )


async def health(_: Request) -> JSONResponse:
    return JSONResponse({"status": "healthy"})


async def stats(_: Request) -> JSONResponse:
    return JSONResponse(
        {
            "tokens_issued": workspace.tokens_issued,
            "invocations": dict(RUNS),
            "requests": workspace.requests,
            "streams_cut": cutter.cuts,
            "token_lifetime_s": workspace.lifetime_s,
        }
    )


async def reset(_: Request) -> JSONResponse:
    workspace.reset()
    cutter.disarm()
    cutter.cuts = 0
    return JSONResponse({"status": "reset"})


async def token_lifetime(request: Request) -> JSONResponse:
    seconds = request.query_params.get("seconds")
    if seconds is None:
        seconds = (await request.json()).get("seconds")
    workspace.lifetime_s = int(seconds)
    return JSONResponse({"token_lifetime_s": workspace.lifetime_s})


async def cut_next_stream(request: Request) -> JSONResponse:
    cutter.arm(int(request.query_params.get("after", "0")))
    return JSONResponse({"armed_after": cutter.armed_after})


fake_routes = Starlette(
    routes=[
        Route("/.well-known/databricks-config", host_metadata, methods=["GET"]),
        Route("/oidc/.well-known/oauth-authorization-server", oauth_metadata, methods=["GET"]),
        Route("/oidc/v1/token", token, methods=["POST"]),
        Route("/_test/health", health, methods=["GET"]),
        Route("/_test/stats", stats, methods=["GET"]),
        Route("/_test/reset", reset, methods=["POST"]),
        Route("/_test/token-lifetime", token_lifetime, methods=["POST"]),
        Route("/_test/cut-next-stream", cut_next_stream, methods=["POST"]),
    ]
)


class FakeAppsIngress:
    """ASGI middleware playing the Databricks Apps front door and the workspace host."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # lifespan: the runtime starts its executor
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith("/_test/"):
            await fake_routes(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        bearer = bearer.strip() if scheme.lower() == "bearer" else ""
        kind = "none" if not bearer else "pat" if bearer.startswith(PAT_PREFIX) else "oauth"
        query = scope.get("query_string", b"").decode()
        workspace.requests.append([scope["method"], path + (f"?{query}" if query else ""), kind])
        if path.startswith("/oidc/") or path.startswith("/.well-known/"):
            await fake_routes(scope, receive, send)
            return
        if path.startswith("/api/"):
            refusal = self._refusal(bearer, kind)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _refusal(bearer: str, kind: str) -> JSONResponse | None:
        challenge = {"WWW-Authenticate": 'Bearer realm="databricks-apps"'}
        if kind == "none":
            message = "Missing bearer token: Databricks Apps require an OAuth access token."
        elif kind == "pat":
            message = PAT_REFUSED
        elif bearer not in workspace.tokens:
            message = "Invalid access token."
        elif workspace.tokens[bearer] <= time.time():
            message = "Access token expired."
        else:
            return None
        return JSONResponse({"error": "unauthorized", "message": message}, 401, challenge)


hide_cuts_in_uvicorn_log()
app = FakeAppsIngress(cutter)
