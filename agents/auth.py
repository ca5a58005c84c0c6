"""Turns a deployment's authentication *reference* into request headers, at call time.

Tokens live only in the server's environment or in databricks-sdk's configuration; the database
holds their names. Error messages name what to set and never include a secret.
"""

import os

from agents import databricks_auth
from agents.models import AuthKind, Deployment, EndpointKind
from agents.models.deployment import PAT_REFUSED


class AgentAuthError(Exception):
    """The deployment's credentials cannot be resolved on this server."""


def auth_headers(deployment: Deployment) -> dict[str, str]:
    """May call the workspace (an OAuth token's refresh): callers on an event loop use
    request_headers, which runs it in a thread."""
    if deployment.auth_kind == AuthKind.ENV_TOKEN:
        token = os.environ.get(deployment.auth_env_var, "")
        if not token:
            raise AgentAuthError(
                f"The environment variable {deployment.auth_env_var} is not set on the server."
            )
        return {"Authorization": f"Bearer {token}"}
    try:
        if deployment.auth_kind == AuthKind.DATABRICKS:
            return databricks_auth.profile_headers(
                deployment.databricks_profile,
                refuse_pat=deployment.endpoint_kind == EndpointKind.AGENT_RUNTIME,
            )
        if deployment.auth_kind == AuthKind.DATABRICKS_M2M:
            return databricks_auth.service_principal_headers(
                deployment.databricks_host, deployment.oauth_client_id, deployment.auth_env_var
            )
    except databricks_auth.PersonalAccessToken as exc:
        raise AgentAuthError(f"{exc}. {PAT_REFUSED}") from None
    except databricks_auth.DatabricksAuthError as exc:
        raise AgentAuthError(str(exc)) from None
    return {}


def needs_a_thread(deployment: Deployment) -> bool:
    """Whether auth_headers may make an HTTP call (databricks-sdk fetching or refreshing)."""
    return deployment.auth_kind in (AuthKind.DATABRICKS, AuthKind.DATABRICKS_M2M)


async def request_headers(deployment: Deployment) -> dict[str, str]:
    """The headers of every call to the deployment's agent, on an event loop."""
    from asgiref.sync import sync_to_async

    if needs_a_thread(deployment):
        # databricks-sdk may refresh an OAuth token over HTTP: a thread, not the event loop.
        headers = await sync_to_async(auth_headers, thread_sensitive=False)(deployment)
    else:
        headers = auth_headers(deployment)
    if deployment.endpoint_kind in TRACE_ID_KINDS:
        headers["x-mlflow-return-trace-id"] = "true"  # protocol.md §1.6
    return headers


# MLflow's agent servers return the trace id when asked (protocol.md §1.6).
TRACE_ID_KINDS = (EndpointKind.MLFLOW_AGENT_SERVER, EndpointKind.MLFLOW_LONG_RUNNING)
