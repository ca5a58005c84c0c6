"""The run's arguments, its temp dir, and the environment Django is set up in (the benchmark's
PostgreSQL database and Redis db)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import urllib.parse
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/reviewapp_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"

# Set by configure(): the parsed arguments, and the temp dir of logs (and the settings module).
ARGS: argparse.Namespace
VAR_DIR: Path


def configure(args: argparse.Namespace, prefix: str) -> None:
    """Keep the arguments, make the temp dir (named `prefix`...), point Django at the
    benchmark's database and Redis db (the database created if missing), and set Django up.
    `args` needs database_url, broker_url and fresh_db."""
    global ARGS, VAR_DIR
    if urllib.parse.urlsplit(args.broker_url).path.strip("/") in ("", "0"):
        raise SystemExit("--broker-url must name a dedicated Redis database (it is flushed), not 0")
    ARGS = args
    VAR_DIR = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(
        {
            "VAR_DIR": str(VAR_DIR),
            "DJANGO_SETTINGS_MODULE": "reviewapp.settings",
            "DATABASE_URL": args.database_url,
            "CELERY_BROKER_URL": args.broker_url,
        }
    )
    os.environ.setdefault("SECRET_KEY", "bench-" + "k" * 50)
    os.environ.pop("DEBUG", None)  # production settings: DEBUG off
    ensure_database(args.database_url, fresh=args.fresh_db)
    import django

    django.setup()


def ensure_database(url: str, *, fresh: bool) -> None:
    """CREATE DATABASE if it is missing (connecting to the server's `postgres` database);
    with `fresh`, DROP it first (migrations edited in place need a new database)."""
    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def psycopg_connect() -> psycopg.Connection:
    """A connection of our own to the benchmark database, outside Django's."""
    return psycopg.connect(ARGS.database_url, autocommit=True)
