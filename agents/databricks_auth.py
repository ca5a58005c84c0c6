"""Databricks credentials through databricks-sdk: a profile or the DATABRICKS_* environment
(unified auth, including a user signed in with `databricks auth login`), or OAuth for a service
principal (machine to machine). No Django models here: the Deployment model checks a profile
with it when saved.

One SDK Config per set of credentials, made once and shared by every call: building one reads
the workspace's OAuth metadata over HTTP, and a Config caches its OAuth token and fetches a new
one before it expires (databricks.sdk.oauth: a token counts as expired 40 s before its end), so
a turn costs no token request.
"""

import configparser
import os
import threading
from pathlib import Path

SDK_TIMEOUT_S = 20

_configs: dict[tuple, object] = {}
_configs_lock = threading.Lock()  # guards the two dicts, never held across a network call
_key_locks: dict[tuple, threading.Lock] = {}


class DatabricksAuthError(Exception):
    """The SDK could not produce a token; the message names what to fix, never a secret."""


class PersonalAccessToken(DatabricksAuthError):
    """The credentials resolve to a personal access token, which Databricks Apps refuse."""


def profile_headers(profile: str, *, refuse_pat: bool = False) -> dict[str, str]:
    where = f"profile {profile!r}" if profile else "the DATABRICKS_* environment"
    if refuse_pat and profile_uses_pat(profile):
        raise PersonalAccessToken(f"{where} holds a personal access token")  # no call needed
    config = _config(("profile", profile), where, profile=profile or None)
    if refuse_pat and config.auth_type == "pat":
        raise PersonalAccessToken(f"{where} holds a personal access token")
    return _authenticate(config, where)


def service_principal_headers(host: str, client_id: str, secret_env_var: str) -> dict[str, str]:
    secret = os.environ.get(secret_env_var, "")
    if not secret:
        raise DatabricksAuthError(
            f"The environment variable {secret_env_var} is not set on the server."
        )
    where = f"the service principal {client_id!r} at {host}"
    # The secret is part of the key: a rotated secret gets a new Config (and a new token).
    key = ("m2m", host, client_id, secret)
    config = _config(
        key,
        where,
        host=host,
        client_id=client_id,
        client_secret=secret,
        auth_type="oauth-m2m",
    )
    return _authenticate(config, where)


def profile_uses_pat(profile: str) -> bool:
    """Whether a profile (blank: the DATABRICKS_* environment) would sign in with a personal
    access token, read from the configuration alone, without a call to the workspace."""
    if not profile:
        return bool(os.environ.get("DATABRICKS_TOKEN")) and not os.environ.get(
            "DATABRICKS_CLIENT_ID"
        )
    path = Path(os.environ.get("DATABRICKS_CONFIG_FILE", "~/.databrickscfg")).expanduser()
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error:
        return False  # the SDK will say what is wrong with the file when it is used
    if profile != parser.default_section and not parser.has_section(profile):
        return False
    section = parser[profile]  # DEFAULT is no section to configparser, but a profile to the SDK
    return bool(section.get("token")) and section.get("auth_type", "pat") == "pat"


def _config(key: tuple, where: str, **options):
    # Imported here: the SDK is only needed for deployments that use it.
    from databricks.sdk.core import Config

    with _configs_lock:
        config = _configs.get(key)
        key_lock = _key_locks.setdefault(key, threading.Lock())
    if config is not None:
        return config
    # Building one may call its workspace for up to SDK_TIMEOUT_S: one set of credentials at a
    # time (the others, of other workspaces, are not held up).
    with key_lock:
        with _configs_lock:
            config = _configs.get(key)
        if config is None:
            try:
                config = Config(
                    retry_timeout_seconds=SDK_TIMEOUT_S,
                    http_timeout_seconds=SDK_TIMEOUT_S,
                    **options,
                )
            except Exception as exc:  # the SDK raises ValueError and its own error types
                raise DatabricksAuthError(
                    f"databricks-sdk could not authenticate with {where}: {type(exc).__name__}"
                ) from None
            with _configs_lock:
                _configs[key] = config
    return config


def _authenticate(config, where: str) -> dict[str, str]:
    try:
        return dict(config.authenticate())
    except Exception as exc:
        raise DatabricksAuthError(
            f"databricks-sdk could not authenticate with {where}: {type(exc).__name__}"
        ) from None


def forget_configs() -> None:
    """For tests: the next call builds its Config again."""
    with _configs_lock:
        _configs.clear()
        _key_locks.clear()
