"""The export formats: batches of rows (inference_tables.columns) in, bytes out, batch by batch,
so an export of any size holds one batch in memory.

- `jsonl`: one JSON object a line; dates and times as ISO 8601.
- `csv`: a header, then a line a row; nested values (maps, structs) as their JSON text, a
  missing value as an empty field.
- `parquet`: the pyarrow schema of the kind, one row group a batch; the footer (which indexes
  the row groups) comes last.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from inference_tables.columns import plain


@dataclass(frozen=True)
class Format:
    name: str
    content_type: str
    extension: str


FORMATS = {
    "jsonl": Format("jsonl", "application/x-ndjson; charset=utf-8", "jsonl"),
    "csv": Format("csv", "text/csv; charset=utf-8", "csv"),
    "parquet": Format("parquet", "application/vnd.apache.parquet", "parquet"),
}


def encode(format_name: str, schema: pa.Schema, batches: Iterable[list[dict]]) -> Iterator[bytes]:
    """The export's bytes, a chunk per batch (a first chunk at once for CSV's header)."""
    if format_name == "jsonl":
        return _jsonl(batches)
    if format_name == "csv":
        return _csv(schema, batches)
    return _parquet(schema, batches)


def _jsonl(batches: Iterable[list[dict]]) -> Iterator[bytes]:
    for batch in batches:
        lines = (json.dumps(row, default=plain, ensure_ascii=False) for row in batch)
        yield "".join(f"{line}\n" for line in lines).encode()


def _csv(schema: pa.Schema, batches: Iterable[list[dict]]) -> Iterator[bytes]:
    names = schema.names
    yield (",".join(names) + "\r\n").encode()
    for batch in batches:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerows([_csv_value(row[name]) for name in names] for row in batch)
        yield text.getvalue().encode()


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=plain, ensure_ascii=False)
    return plain(value)


class _Collected(io.RawIOBase):
    """Where the Parquet writer writes: what it wrote since the last `take`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        taken, self._parts = b"".join(self._parts), []
        return taken


def _parquet(schema: pa.Schema, batches: Iterable[list[dict]]) -> Iterator[bytes]:
    sink = _Collected()
    with pq.ParquetWriter(sink, schema) as writer:
        for batch in batches:
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                # Arrow keeps freed buffers for reuse; handing them back took the export's
                # peak RSS growth over 1M turns from 127 to 106 MB (bench/logs.py).
                pa.default_memory_pool().release_unused()
                yield sink.take()
    yield sink.take()  # the footer
