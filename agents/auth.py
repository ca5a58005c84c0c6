"""Turns a deployment's authentication *reference* into request headers, at call time.

Tokens live only in the server's environment or in databricks-sdk's configuration; the database
holds their names. Error messages name what to set and never include a secret.
"""

import os
import threading

from agents.models import AuthKind, Deployment


class AgentAuthError(Exception):
    """The deployment's credentials cannot be resolved on this server."""


def auth_headers(deployment: Deployment) -> dict[str, str]:
    if deployment.auth_kind == AuthKind.ENV_TOKEN:
        token = os.environ.get(deployment.auth_env_var, "")
        if not token:
            raise AgentAuthError(
                f"The environment variable {deployment.auth_env_var} is not set on the server."
            )
        return {"Authorization": f"Bearer {token}"}
    if deployment.auth_kind == AuthKind.DATABRICKS:
        return _databricks_headers(deployment.databricks_profile)
    return {}


# One databricks-sdk Config per profile: building one probes the host's metadata over HTTP, and
# a Config refreshes OAuth tokens itself, so it is made once and reused by every call.
_databricks_configs: dict[str, object] = {}
_databricks_configs_lock = threading.Lock()
SDK_TIMEOUT_S = 20


def _databricks_headers(profile: str) -> dict[str, str]:
    # Imported here: the SDK is only needed for deployments that use it.
    from databricks.sdk.core import Config

    try:
        with _databricks_configs_lock:
            config = _databricks_configs.get(profile)
            if config is None:
                config = Config(
                    profile=profile or None,
                    retry_timeout_seconds=SDK_TIMEOUT_S,
                    http_timeout_seconds=SDK_TIMEOUT_S,
                )
                _databricks_configs[profile] = config
        return dict(config.authenticate())
    except Exception as exc:  # the SDK raises ValueError and its own error types
        where = f"profile {profile!r}" if profile else "the DATABRICKS_* environment"
        raise AgentAuthError(
            f"databricks-sdk could not authenticate with {where}: {type(exc).__name__}"
        ) from None
