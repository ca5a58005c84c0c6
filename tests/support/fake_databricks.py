"""A local stand-in for the Databricks workspace routes databricks-sdk 0.156 calls, for tests.

Routes (as the SDK requests them, see databricks/sdk/{config,oauth,credentials_provider}.py and
service/serving.py):
- `GET /.well-known/databricks-config`: host metadata; `Config()` reads `oidc_endpoint` from it
  and derives `discovery_url = {oidc_endpoint}/.well-known/oauth-authorization-server`;
- `GET /oidc/.well-known/oauth-authorization-server`: the OAuth endpoints (oauth-m2m);
- `POST /oidc/v1/token`: client_credentials with HTTP basic client auth (`use_header=True`);
- `GET /api/2.0/serving-endpoints` and `GET /api/2.0/serving-endpoints/{name}`; the SDK's
  `list()` reads one unpaginated `{"endpoints": [...]}` page;
- `POST /serving-endpoints/{name}[/served-models/{entity}]/invocations`: a chat-completions answer,
  so a test can prove an imported URL and its auth headers reach the served entity;
- `GET /api/2.0/apps[?page_token=...]` (service/apps.py `AppsAPI.list`): `{"apps": [...]}` in
  pages of `apps_page_size` (0: one page) with `next_page_token` while more remain; 404 when
  `apps_api` is off, as a workspace without Databricks Apps answers.

API routes need `Authorization: Bearer <the PAT or an issued OAuth token>`. As a workspace does,
a missing credential is 401 and an unknown token 403 `Invalid access token.` (body
`{"error_code": ..., "message": ...}`). The server speaks plain http on 127.0.0.1: the SDK keeps
an explicit `http://` host as given (`_fix_host_if_needed` only adds https:// to a bare host).
"""

import base64
import copy
import json
import os
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

WORKSPACE_ID = "1234567890123456"
OAUTH_TOKEN_LIFETIME_S = 3600
CREATED_MS = 1767225600000  # 2026-01-01, only so the bodies carry realistic timestamps


def isolate_sdk_environment(monkeypatch, tmp_path) -> None:
    """Hide the machine's DATABRICKS_* variables and ~/.databrickscfg from databricks-sdk, so a
    test sees only the credentials it sets."""
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "absent-databrickscfg"))


@dataclass
class Recorded:
    method: str
    path: str
    authorization: str
    query: str = ""


def served_entity(
    model_name: str, version: str, *, name: str = "", environment_vars: dict | None = None
) -> dict[str, Any]:
    """A ServedEntityOutput as GET /serving-endpoints/{name} returns it for a UC model version.
    The default name follows databricks.agents.deploy: `<catalog-schema-model>_<version>`."""
    return {
        "name": name or f"{model_name.replace('.', '-')}_{version}",
        "entity_name": model_name,
        "entity_version": version,
        "workload_size": "Small",
        "scale_to_zero_enabled": True,
        "environment_vars": environment_vars
        or {"ENABLE_MLFLOW_TRACING": "true", "RETURN_REQUEST_ID_IN_RESPONSE": "true"},
        "state": {"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""},
        "creator": "owner@example.com",
        "creation_timestamp": CREATED_MS,
    }


def agent_endpoint(
    name: str,
    task: str,
    entities: list[tuple[dict[str, Any], int]],
    *,
    feedback: bool = False,
) -> dict[str, Any]:
    """A ServingEndpointDetailed for an agent endpoint: `(served entity, traffic %)` pairs, plus
    the legacy `feedback` entity at 0% when asked (protocol.md §4.1)."""
    pairs = list(entities)
    if feedback:
        catalog_schema = pairs[0][0]["entity_name"].rsplit(".", 1)[0]
        pairs.append((served_entity(f"{catalog_schema}.feedback", "1", name="feedback"), 0))
    return {
        "name": name,
        "id": secrets.token_hex(16),
        "task": task,
        "creator": "owner@example.com",
        "creation_timestamp": CREATED_MS,
        "last_updated_timestamp": CREATED_MS,
        "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
        "config": {
            "config_version": len(pairs),
            "served_entities": [entity for entity, _ in pairs],
            "traffic_config": {
                "routes": [
                    {"served_model_name": entity["name"], "traffic_percentage": percent}
                    for entity, percent in pairs
                ]
            },
        },
        "tags": [{"key": "MONITOR_EXPERIMENT_ID", "value": "4242"}],
        "permission_level": "CAN_MANAGE",
        "route_optimized": False,
    }


def foundation_model_endpoint(name: str, task: str, model: str) -> dict[str, Any]:
    """A pay-per-token foundation model endpoint, as every workspace lists a dozen of."""
    return {
        "name": name,
        "id": secrets.token_hex(16),
        "task": task,
        "creator": "Databricks",
        "creation_timestamp": CREATED_MS,
        "last_updated_timestamp": CREATED_MS,
        "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
        "config": {
            "served_entities": [
                {
                    "name": name,
                    "foundation_model": {"name": model, "display_name": model},
                    "state": {"deployment": "DEPLOYMENT_READY"},
                }
            ]
        },
        "permission_level": "CAN_QUERY",
    }


def standard_endpoints() -> list[dict[str, Any]]:
    """A small workspace: three agent endpoints of the three agent tasks (one redeployed, its
    old version kept at 0%, with a feedback entity), two foundation models, one classic model."""
    classic = agent_endpoint(
        "churn-scorer", "", [(served_entity("main.ml.churn", "4", name="churn-4"), 100)]
    )
    del classic["task"]
    return [
        agent_endpoint(
            "agents_main-agents-rag_bot",
            "agent/v2/chat",
            [
                (served_entity("main.agents.rag_bot", "2"), 0),
                (served_entity("main.agents.rag_bot", "3"), 100),
            ],
            feedback=True,
        ),
        agent_endpoint(
            "agents_main-support-triage",
            "agent/v1/responses",
            [(served_entity("main.support.triage", "1"), 100)],
        ),
        agent_endpoint(
            "agents_main-legacy-chat_bot",
            "agent/v1/chat",
            [(served_entity("main.legacy.chat_bot", "5"), 100)],
        ),
        foundation_model_endpoint(
            "databricks-meta-llama-3-3-70b-instruct", "llm/v1/chat", "llama-3-3-70b"
        ),
        foundation_model_endpoint("databricks-gte-large-en", "llm/v1/embeddings", "gte-large-en"),
        classic,
    ]


def databricks_app(
    name: str,
    *,
    url: str | None = None,
    state: str = "RUNNING",
    compute: str = "ACTIVE",
    message: str = "",
) -> dict[str, Any]:
    """An App as GET /api/2.0/apps lists it. Its URL is on the Apps domain, not the workspace
    host, as a deployed app's is; `url=""` leaves the field out (an app never deployed)."""
    body: dict[str, Any] = {
        "name": name,
        "id": secrets.token_hex(16),
        "description": f"{name} (test app)",
        "url": url if url is not None else f"https://{name}-{WORKSPACE_ID}.aws.databricksapps.com",
        "app_status": {"state": state, "message": message or f"App is {state.lower()}."},
        "compute_status": {"state": compute, "message": f"App compute is {compute.lower()}."},
        "compute_size": "MEDIUM",
        "active_deployment": {
            "deployment_id": secrets.token_hex(16),
            "mode": "SNAPSHOT",
            "source_code_path": f"/Workspace/Users/owner@example.com/{name}",
            "status": {"state": "SUCCEEDED", "message": "App started successfully"},
        },
        "service_principal_client_id": secrets.token_hex(8),
        "service_principal_name": f"app-{name}",
        "creator": "owner@example.com",
        "create_time": "2026-01-01T00:00:00Z",
        "update_time": "2026-01-01T00:00:00Z",
    }
    if not body["url"]:
        del body["url"]
    return body


def _summary(detailed: dict[str, Any], with_config: bool) -> dict[str, Any]:
    """The ServingEndpoint list() returns: config reduced to served entities' names/versions."""
    summary = {k: v for k, v in detailed.items() if k not in ("config", "permission_level")}
    if with_config and "config" in detailed:
        keep = ("name", "entity_name", "entity_version", "foundation_model", "external_model")
        summary["config"] = {
            "served_entities": [
                {k: e[k] for k in keep if k in e} for e in detailed["config"]["served_entities"]
            ]
        }
    return summary


@dataclass
class FakeDatabricksWorkspace:
    """Start with `start()` (or as a context manager); edit `endpoints` between calls."""

    token: str = "dapi-fake-workspace-pat"
    client_id: str = "fake-sp-client-id"
    client_secret: str = "fake-sp-secret"
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Endpoints whose list() summary carries no config, so the client must get() them.
    list_without_config: set[str] = field(default_factory=set)
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    apps_page_size: int = 0  # 0: every app on one page
    apps_api: bool = True
    requests: list[Recorded] = field(default_factory=list)
    issued_tokens: set[str] = field(default_factory=set)
    url: str = ""

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None

    def add(self, *bodies: dict[str, Any]) -> None:
        for body in bodies:
            self.endpoints[body["name"]] = copy.deepcopy(body)

    def add_apps(self, *bodies: dict[str, Any]) -> None:
        for body in bodies:
            self.apps[body["name"]] = copy.deepcopy(body)

    def start(self) -> "FakeDatabricksWorkspace":
        workspace = self

        class Handler(_Handler):
            fake = workspace

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeDatabricksWorkspace":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def paths(self, method: str = "GET") -> list[str]:
        return [r.path for r in self.requests if r.method == method]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeDatabricksWorkspace

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any], headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> str:
        path, _, query = self.path.partition("?")
        self.fake.requests.append(
            Recorded(self.command, path, self.headers.get("Authorization", ""), query)
        )
        return path

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            self._reply(
                401,
                {
                    "error_code": 401,
                    "message": "Credential was not sent or was of an unsupported type for this "
                    "API.",
                },
            )
            return False
        token = header.removeprefix("Bearer ")
        if token != self.fake.token and token not in self.fake.issued_tokens:
            self._reply(
                403,
                {"error_code": 403, "message": "Invalid access token."},
                {"X-Databricks-Reason-Phrase": "Invalid access token."},
            )
            return False
        return True

    def do_GET(self) -> None:
        path = self._record()
        base = self.fake.url
        if path == "/.well-known/databricks-config":
            return self._reply(
                200,
                {"oidc_endpoint": f"{base}/oidc", "workspace_id": WORKSPACE_ID},
            )
        if path == "/oidc/.well-known/oauth-authorization-server":
            return self._reply(
                200,
                {
                    "issuer": f"{base}/oidc",
                    "authorization_endpoint": f"{base}/oidc/v1/authorize",
                    "token_endpoint": f"{base}/oidc/v1/token",
                    "grant_types_supported": ["client_credentials", "authorization_code"],
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_basic",
                        "client_secret_post",
                    ],
                },
            )
        if path == "/api/2.0/apps" and self.fake.apps_api:
            return self._apps_page() if self._authorized() else None
        if not path.startswith("/api/2.0/serving-endpoints"):
            return self._reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "No API."})
        if not self._authorized():
            return None
        if path == "/api/2.0/serving-endpoints":
            hidden = self.fake.list_without_config
            listed = [
                _summary(body, name not in hidden) for name, body in self.fake.endpoints.items()
            ]
            return self._reply(200, {"endpoints": listed})
        name = unquote(path.removeprefix("/api/2.0/serving-endpoints/"))
        if name in self.fake.endpoints:
            return self._reply(200, self.fake.endpoints[name])
        return self._reply(
            404,
            {
                "error_code": "RESOURCE_DOES_NOT_EXIST",
                "message": f"Endpoint with name '{name}' does not exist.",
            },
        )

    def _apps_page(self) -> None:
        query = parse_qs(self.path.partition("?")[2])
        start = int(query.get("page_token", ["0"])[0])
        listed = list(self.fake.apps.values())
        size = self.fake.apps_page_size or len(listed) or 1
        body: dict[str, Any] = {"apps": listed[start : start + size]}
        if start + size < len(listed):
            body["next_page_token"] = str(start + size)
        return self._reply(200, body)

    def do_POST(self) -> None:
        path = self._record()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if path == "/oidc/v1/token":
            return self._token(raw)
        if not (path.startswith("/serving-endpoints/") and path.endswith("/invocations")):
            return self._reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "No API."})
        if not self._authorized():
            return None
        parts = path.split("/")  # '', serving-endpoints, name, [served-models, entity], invocations
        endpoint = self.fake.endpoints.get(parts[2])
        entity_names = [
            e["name"] for e in (endpoint or {}).get("config", {}).get("served_entities", [])
        ]
        if endpoint is None or (len(parts) == 6 and parts[4] not in entity_names):
            return self._reply(
                404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "No such endpoint."}
            )
        # The shape of protocol.md §1.2, enough to show the request reached the entity.
        return self._reply(
            200,
            {
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"Hello from {path}"},
                        "finish_reason": "stop",
                    }
                ],
            },
        )

    def _token(self, raw: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        expected = f"{self.fake.client_id}:{self.fake.client_secret}".encode()
        given = self.headers.get("Authorization", "").removeprefix("Basic ")
        if given.encode() != base64.b64encode(expected):
            return self._reply(
                401,
                {"error": "invalid_client", "error_description": "Client authentication failed"},
            )
        if form.get("grant_type") != "client_credentials":
            return self._reply(400, {"error": "unsupported_grant_type"})
        token = "fake-oauth-" + secrets.token_hex(12)
        self.fake.issued_tokens.add(token)
        return self._reply(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": OAUTH_TOKEN_LIFETIME_S,
                "scope": form.get("scope", "all-apis"),
            },
        )
