"""A missing or bad setting stops start-up with a message that says what to set."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from reviewapp import env

ROOT = Path(__file__).resolve().parent.parent


def start_up(tmp_path, **overrides: str) -> subprocess.CompletedProcess:
    """Load the settings in a fresh process, as `manage.py check` does at start-up."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "SECRET_KEY_FILE", "DEBUG")
    }
    environ.update({"VAR_DIR": str(tmp_path), "SECRET_KEY": "x" * 50})
    environ.update(overrides)
    environ = {k: v for k, v in environ.items() if v is not None and v != "<unset>"}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_defaults_start(tmp_path):
    result = start_up(tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"SECRET_KEY": "<unset>"}, "SECRET_KEY is not set"),
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"DATABASE_URL": "mysql://root@localhost/db"}, "unsupported database"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL="),
        ({"CELERY_BROKER_URL": "memory://"}, "CELERY_BROKER_URL='memory://' is not supported"),
        ({"WEB_PORT": "eighty"}, "WEB_PORT='eighty' is not a whole number"),
        ({"DEMO_AGENT_PORT": "70000"}, "DEMO_AGENT_PORT=70000 is out of range"),
        ({"SITE_URL": "ftp://example.com"}, "SITE_URL='ftp://example.com' must be an http(s) URL"),
        ({"SECRET_KEY": "<unset>", "SECRET_KEY_FILE": "/nonexistent/key"}, "SECRET_KEY_FILE="),
    ],
)
def test_a_bad_setting_stops_start_up_with_what_to_set(tmp_path, overrides, expected):
    result = start_up(tmp_path, **overrides)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert expected in result.stderr


def test_debug_mode_runs_without_a_secret_key(tmp_path):
    result = start_up(tmp_path, SECRET_KEY="<unset>", DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_a_secret_key_can_come_from_a_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("k" * 50 + "\n")
    result = start_up(tmp_path, SECRET_KEY="<unset>", SECRET_KEY_FILE=str(key_file))
    assert result.returncode == 0, result.stderr


def test_tasks_never_run_eagerly_and_the_default_broker_needs_no_server():
    assert settings.CELERY_TASK_ALWAYS_EAGER is False
    from reviewapp.celery import app

    assert app.conf.task_always_eager is False


def test_env_bool_accepts_only_clear_values(monkeypatch):
    monkeypatch.setenv("FLAG", "TRUE")
    assert env.env_bool("FLAG") is True
    monkeypatch.setenv("FLAG", "0")
    assert env.env_bool("FLAG") is False
    monkeypatch.setenv("FLAG", "yep")
    with pytest.raises(ImproperlyConfigured, match="FLAG"):
        env.env_bool("FLAG")


def test_env_secret_refuses_both_forms(monkeypatch, tmp_path):
    monkeypatch.setenv("TOKEN", "a")
    monkeypatch.setenv("TOKEN_FILE", str(tmp_path / "t"))
    with pytest.raises(ImproperlyConfigured, match="either TOKEN or TOKEN_FILE"):
        env.env_secret("TOKEN")


def test_the_key_generated_by_make_setup_is_used_when_none_is_set(tmp_path):
    (tmp_path / "secret-key").write_text("g" * 50 + "\n")
    result = start_up(tmp_path, SECRET_KEY="<unset>")
    assert result.returncode == 0, result.stderr


def test_under_asgi_postgresql_connections_come_from_a_pool(tmp_path):
    """Persistent connections pile up under ASGI (one per request thread) until PostgreSQL
    refuses more; the ASGI entry point makes the settings use psycopg's pool instead."""
    from tests.conftest import require_server

    url = os.environ.get("DATABASE_URL", "")
    require_server(url.startswith("postgres"), "PostgreSQL (DATABASE_URL=postgres://...)")
    code = (
        "import reviewapp.asgi\n"
        "from django.db import connection\n"
        "connection.ensure_connection()\n"
        "with connection.cursor() as c: c.execute('SELECT 1')\n"
        "print(connection.settings_dict['CONN_MAX_AGE'], connection.pool.max_size)\n"
    )
    environ = {**os.environ, "VAR_DIR": str(tmp_path), "SECRET_KEY": "x" * 50}
    environ.pop("REVIEWAPP_SERVER", None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "8"]


def test_the_embedded_sqlite_database_lets_a_write_commit_while_someone_reads(tmp_path):
    """WAL mode: with the default (SQLite) database, a write commits while another connection
    is in the middle of reading, instead of waiting for it ("database is locked" once the busy
    timeout runs out), as when a few people use the app at once."""
    code = (
        "import django, os\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'reviewapp.settings')\n"
        "django.setup()\n"
        "from django.db import connections\n"
        "from django.db.utils import ConnectionHandler\n"
        "writer = connections['default']\n"
        "writer.settings_dict['OPTIONS']['timeout'] = 0.5\n"
        "with writer.cursor() as c: c.execute('CREATE TABLE t (x int)')\n"
        "reader = ConnectionHandler(connections.settings)['default']\n"
        "with reader.cursor() as r, writer.cursor() as c:\n"
        "    r.execute('BEGIN'); r.execute('SELECT count(*) FROM t'); r.fetchone()\n"
        "    c.execute('BEGIN IMMEDIATE'); c.execute('INSERT INTO t VALUES (1)')\n"
        "    c.execute('COMMIT')\n"
        "    r.execute('PRAGMA journal_mode'); mode = r.fetchone()[0]\n"
        "    r.execute('COMMIT')\n"
        "print(mode)\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environ.update({"VAR_DIR": str(tmp_path), "SECRET_KEY": "x" * 50})
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["wal"]
