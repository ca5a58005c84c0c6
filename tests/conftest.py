"""Shared fixtures: users in each role, API clients, and the real servers integration tests use.

Real servers (Redis, the demo agent) are required under CI=true; elsewhere a test that needs a
missing one is skipped with a message saying what to start.
"""

import logging
import os

import pytest
import redis
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from agents.models import Deployment
from reviewapp import roles

pytest_plugins = [
    "tests.support.mlflow_server",  # before agent_server, which imports it
    "tests.support.agent_server",
    "tests.support.agent_runtime",
    "tests.support.long_running_server",
    "tests.support.asgi_server",
    "tests.support.demo_agent",
]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """SQLite tests use a file, not Django's in-memory database: there, a table lock makes
    another thread (the live server, an in-process worker) fail at once with "database table is
    locked" instead of waiting as the app's own file database does."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        name = tmp_path_factory.mktemp("db") / "test.sqlite3"
        database.setdefault("TEST", {})["NAME"] = str(name)


def require_server(available: bool, what: str) -> None:
    """Skip outside CI when a real server is missing; fail under CI, where it must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is not reachable, and CI=true requires it.")
    pytest.skip(f"{what} is not reachable; start it to run this test.")


def _make_user(django_user_model, username: str, role: str | None):
    user = django_user_model.objects.create_user(
        username=username, email=f"{username}@example.com", password="pw-" + username
    )
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def admin_user(db, django_user_model):
    return _make_user(django_user_model, "alice-admin", roles.ADMIN)


@pytest.fixture
def reviewer(db, django_user_model):
    return _make_user(django_user_model, "rita-reviewer", roles.REVIEWER)


@pytest.fixture
def stakeholder(db, django_user_model):
    return _make_user(django_user_model, "sam-stakeholder", roles.STAKEHOLDER)


@pytest.fixture
def stranger(db, django_user_model):
    """Signed in, but with no role."""
    return _make_user(django_user_model, "nora-norole", None)


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def deployment_factory(db):
    counter = {"n": 0}

    def make(**fields) -> Deployment:
        counter["n"] += 1
        n = counter["n"]
        values = {
            "model_name": f"main.agents.bot{n}",
            "model_version": "1",
            "query_endpoint": f"https://workspace.example.com/serving-endpoints/bot{n}/invocations",
        }
        values.update(fields)
        deployment = Deployment(**values)
        deployment.full_clean()
        deployment.save()
        return deployment

    return make


@pytest.fixture
def demo_deployment(db, demo_agent):
    """A deployment pointing at the running demo agent, as `make run` creates it."""
    deployment = Deployment(
        model_name="main.demo.rag_agent",
        model_version="1",
        display_name="Demo RAG agent",
        query_endpoint=f"{demo_agent.url}/serving-endpoints/agents_main-demo-rag_agent/invocations",
        agent_schema="chat_completions",
        feedback_sink="databricks_feedback",
    )
    deployment.full_clean()
    deployment.save()
    return deployment


def _redis_test_url() -> str:
    configured = os.environ.get("CELERY_BROKER_URL", "")
    if configured.startswith("redis://"):
        return configured
    return "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = _redis_test_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        available = True
    except redis.RedisError:
        available = False
    require_server(available, f"Redis at {url}")
    return url


@pytest.fixture
def celery_worker_on_redis(redis_url, transactional_db):
    """A real Celery worker (celery.contrib.testing) consuming from real Redis, in this process.

    The test's database rows must be committed for the worker's thread to see them, hence
    transactional_db.
    """
    from celery.contrib.testing.worker import start_worker

    from reviewapp.celery import app

    previous, root_level = app.conf.broker_url, logging.root.level
    _use_broker(app, redis_url)
    app.control.purge()  # messages left by an earlier, interrupted run are not this test's
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=20):
            yield app
    finally:
        _use_broker(app, previous)
        # The worker set the root logger to ERROR: later tests' caplog would miss warnings.
        logging.root.setLevel(root_level)


def _use_broker(app, url: str) -> None:
    """Publish on `url` from now on. The app keeps its connection pool and its producer pool,
    each made for the broker of the first publish: both are dropped (as Celery does after a
    fork), or a test that published before (on the default filesystem broker) sends this test's
    tasks where its worker never looks."""
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


# --- Browser tests -------------------------------------------------------------------------------
# Debian's chromium, never a downloaded browser. Playwright's sync API runs an event loop in the
# test's thread, so Django's guard against ORM calls from async code must be relaxed for them.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    require_server(os.path.exists(CHROMIUM), f"Debian's chromium ({CHROMIUM})")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_FLAGS}


def pytest_collection_modifyitems(config, items) -> None:
    # Once Playwright's sync API has started, the main thread has an event loop marked running,
    # and asgiref's async_to_sync (chat.chat_turn) refuses to run there: browser tests go last.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(autouse=True)
def _fresh_access_cache():
    """Each test starts with an empty access cache (agents/access.py), as a new process would:
    SQLite reuses the ids of rows a rolled-back test made, so a cached user could come back."""
    from agents import access

    access.forget()
