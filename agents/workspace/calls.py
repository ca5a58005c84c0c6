"""Calls to a Databricks workspace through databricks-sdk, and their failures said in words
that name what to fix, without a secret of ours in them."""

import os
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied, Unauthenticated

_SECRET_ENV_VARS = ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_PASSWORD")


T = TypeVar("T")


class WorkspaceError(Exception):
    """The workspace cannot be reached or refused us; the message is safe to print."""


def workspace_connect(*, profile: str = "", timeout_s: int = 30) -> WorkspaceClient:
    """A client from databricks-sdk unified auth: `profile` in ~/.databrickscfg (or
    DATABRICKS_CONFIG_FILE), else DATABRICKS_HOST with DATABRICKS_TOKEN or
    DATABRICKS_CLIENT_ID/SECRET. Raises WorkspaceError when no credentials resolve."""
    try:
        config = Config(
            profile=profile or None,
            retry_timeout_seconds=timeout_s,
            http_timeout_seconds=timeout_s,
        )
    except ValueError as exc:
        where = f"profile {profile!r}" if profile else "the DATABRICKS_* environment"
        raise WorkspaceError(
            f"databricks-sdk found no usable credentials in {where}: {safe_message(exc)}"
        ) from None
    return WorkspaceClient(config=config)


class EndpointSkipped(Exception):
    """One endpoint cannot be read, though the workspace answers: skip it, keep syncing."""


class AppsUnavailable(Exception):
    """The workspace answers, but not with its apps: skip the apps, keep the endpoints."""


def call(client: WorkspaceClient, fetch: Callable[[], T], *, one_endpoint: bool = False) -> T:
    """Run one SDK call, turning its failures into a WorkspaceError that says what to fix."""
    host = client.config.host
    try:
        return fetch()
    except NotFound as exc:
        if one_endpoint:
            raise EndpointSkipped("the endpoint was deleted while syncing") from None
        raise WorkspaceError(
            f"{host} has no serving-endpoints API ({safe_message(exc)}); is it a workspace URL?"
        ) from None
    except PermissionDenied as exc:
        # The listing worked with these credentials, so this is one endpoint's permissions.
        if one_endpoint:
            raise EndpointSkipped(f"not allowed to read it: {safe_message(exc)}") from None
        raise WorkspaceError(
            f"{host} refused the credentials ({client.config.auth_type} auth): "
            f"{safe_message(exc)} Check the token, the service principal or the profile."
        ) from None
    except Unauthenticated as exc:
        raise WorkspaceError(
            f"{host} refused the credentials ({client.config.auth_type} auth): "
            f"{safe_message(exc)} Check the token, the service principal or the profile."
        ) from None
    except (TimeoutError, requests.RequestException) as exc:
        cause = exc.__cause__ or exc
        raise WorkspaceError(
            f"Cannot reach {host} within {client.config.retry_timeout_seconds} s "
            f"({_connection_reason(cause)}). Check DATABRICKS_HOST or the profile's host."
        ) from None
    except DatabricksError as exc:
        raise WorkspaceError(f"{host} answered with an error: {safe_message(exc)}") from None
    except ValueError as exc:  # the SDK's OAuth token exchange reports refusals this way
        raise WorkspaceError(
            f"databricks-sdk could not authenticate to {host} ({client.config.auth_type}): "
            f"{safe_message(exc)}"
        ) from None


def _connection_reason(exc: BaseException) -> str:
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "timed out"):
        if known in text:
            return known.lower()
    return type(exc).__name__


def safe_message(exc: BaseException) -> str:
    """The SDK's message without its config dump, and with no secret of ours in it."""
    text = str(exc).split(" Config: ", 1)[0].strip()
    for name in _SECRET_ENV_VARS:
        secret = os.environ.get(name, "")
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text[:500]


def enum_value(value: Any) -> str:
    return getattr(value, "value", None) or "unknown"
