"""Exports of the request log and the assessment log: what a user may see and the filters
select, read in batches by primary key (keyset: each batch one indexed query, never an
OFFSET), oldest first, encoded as it is read. One service for every entry point: the pages,
the API and `manage.py export_logs` all call `export`.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from agents.models import RequestLog
from feedback.models import Rating
from inference_tables import columns, formats
from review.filters import day_range

BATCH_ROWS = 500  # rows read and encoded at a time: the memory an export holds
KINDS = ("requests", "assessments")


@dataclass(frozen=True)
class Export:
    kind: str
    format: formats.Format
    chunks: Iterator[bytes]

    @property
    def filename(self) -> str:
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return f"{self.kind}-{stamp}.{self.format.extension}"


def export(kind: str, format_name: str, rows: QuerySet, *, read=None) -> Export:
    """`rows` (turns for "requests", rating versions for "assessments") as the kind's
    inference table in the format, as chunks of bytes made while they are read. `read` is
    called with the number of rows of each batch read (a progress bar)."""
    if kind == "requests":
        schema, batches = columns.REQUEST_LOG, request_log_batches(rows, read)
    else:
        schema, batches = columns.ASSESSMENT_LOG, assessment_log_batches(rows, read)
    return Export(kind, formats.FORMATS[format_name], formats.encode(format_name, schema, batches))


def request_log_batches(turns: QuerySet[RequestLog], read=None) -> Iterator[list[dict]]:
    values = turns.annotate(trace_text=Cast("trace", TextField())).values_list(
        *columns.REQUEST_LOG_FIELDS
    )
    for batch in _by_key(values, read):
        yield [columns.request_log_row(row) for row in batch]


def assessment_log_batches(ratings: QuerySet[Rating], read=None) -> Iterator[list[dict]]:
    values = ratings.values_list(*columns.ASSESSMENT_LOG_FIELDS)
    for batch in _by_key(values, read):
        yield [row for rating in batch for row in columns.assessment_log_rows(rating)]


def _by_key(values: QuerySet, read=None) -> Iterator[list[tuple]]:
    """Batches of `values` (the primary key first) in key order; each batch one query that
    starts where the last one ended."""
    last = 0
    while True:
        batch = list(values.filter(pk__gt=last).order_by("pk")[:BATCH_ROWS])
        if not batch:
            return
        last = batch[-1][0]
        if read is not None:
            read(len(batch))
        yield batch


def everything(
    kind: str,
    *,
    deployment_id: int | None = None,
    since: date | None = None,
    until: date | None = None,
) -> QuerySet:
    """Every turn or rating version (`manage.py export_logs`: the operator sees everything)."""
    rows = (RequestLog if kind == "requests" else Rating).objects.all()
    if deployment_id:
        rows = rows.filter(deployment_id=deployment_id)
    return _in_days(rows, since, until)


def _in_days(rows: QuerySet, since: date | None, until: date | None) -> QuerySet:
    """Rows made from the start of `since` to the end of `until` (the server's time zone)."""
    start, end = day_range(since, until)
    if start is not None:
        rows = rows.filter(created_at__gte=start)
    if end is not None:
        rows = rows.filter(created_at__lt=end)
    return rows
