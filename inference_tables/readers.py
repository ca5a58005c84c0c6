"""The rows of an uploaded or local request-log file, each with where it is (the line of a
JSON lines file, the row of a Parquet file, from 1), read a batch at a time. A line that is not
JSON comes as a RowProblem in its place, so the import reports it and goes on."""

import json
from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from inference_tables.imports import RowProblem

READ_FORMATS = ("jsonl", "parquet")
PARQUET_MAGIC = b"PAR1"


def format_of(name: str, head: bytes) -> str:
    """`parquet` or `jsonl`, by the file's first bytes (a Parquet file starts with PAR1)."""
    if head.startswith(PARQUET_MAGIC) or name.lower().endswith(".parquet"):
        return "parquet"
    return "jsonl"


def rows_of(file: IO[bytes], format_name: str) -> Iterator[tuple[int, Any]]:
    if format_name == "parquet":
        return _parquet_rows(file)
    return _jsonl_rows(file)


def _jsonl_rows(file: IO[bytes]) -> Iterator[tuple[int, Any]]:
    for line_number, line in enumerate(file, 1):
        if not line.strip():
            continue
        try:
            yield line_number, json.loads(line)
        except ValueError as exc:
            yield line_number, RowProblem(f"Not JSON: {exc}.")


def _parquet_rows(file: IO[bytes]) -> Iterator[tuple[int, Any]]:
    try:
        parquet = pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as exc:
        yield 0, RowProblem(f"Not a Parquet file: {exc}")
        return
    row_number = 0
    for batch in parquet.iter_batches(batch_size=1_000):
        for row in batch.to_pylist(maps_as_pydicts="strict"):
            row_number += 1
            yield row_number, row
