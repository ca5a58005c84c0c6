"""Fixtures of the `sync_deployments` tests: a fake workspace, reached through the real
databricks-sdk with an environment of the test's own."""

import pytest

from tests.support.fake_databricks import (
    FakeDatabricksWorkspace,
    isolate_sdk_environment,
    standard_endpoints,
)
from tests.support.workspace_sync import TRIAGE


@pytest.fixture
def sdk_env(monkeypatch, tmp_path):
    isolate_sdk_environment(monkeypatch, tmp_path)
    return monkeypatch


@pytest.fixture
def workspace(sdk_env):
    with FakeDatabricksWorkspace() as fake:
        fake.add(*standard_endpoints())
        fake.list_without_config.add(TRIAGE)
        yield fake


@pytest.fixture
def pat_env(sdk_env, workspace):
    sdk_env.setenv("DATABRICKS_HOST", workspace.url)
    sdk_env.setenv("DATABRICKS_TOKEN", workspace.token)
    return workspace
