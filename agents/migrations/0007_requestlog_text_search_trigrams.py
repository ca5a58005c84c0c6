"""Trigram indexes for the requests page's text search on PostgreSQL.

`q` is `icontains` on the question and the answer, which Django writes on PostgreSQL as
UPPER(column) LIKE UPPER('%word%'): a GIN trigram index on UPPER(column) lets a rare word be
found without reading the whole log (bench/review.py). SQLite has no such index: there, this
migration does nothing. Built CONCURRENTLY (so not in a transaction): the log keeps taking
turns while a big table is indexed.
"""

from django.db import migrations

INDEXES = {
    "requestlog_request_trgm": "request",
    "requestlog_response_trgm": "response",
}


def create_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} "
            f"ON agents_requestlog USING gin (UPPER({column}) gin_trgm_ops)"
        )
    # The planner knows how often a word occurs only from statistics on the indexed expressions,
    # which ANALYZE gathers (a sample: cheap): without them it takes every word for a rare one
    # and reads all the turns that hold a common word, then sorts them.
    schema_editor.execute("ANALYZE agents_requestlog")


def drop_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("agents", "0006_requestlog_keyset_indexes"),
    ]

    operations = [
        migrations.RunPython(create_trigram_indexes, drop_trigram_indexes, elidable=False),
    ]
