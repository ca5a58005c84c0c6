"""The rows of an uploaded or local request-log file, each with where it is (the line of a
JSON lines file, the row of a Parquet file, from 1), read a batch at a time. A line that is not
JSON comes as a RowProblem in its place, so the import reports it and goes on."""

import json
from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from inference_tables.imports import RowProblem

PARQUET_MAGIC = b"PAR1"


def rows_of(file: IO[bytes], name: str) -> tuple[str, Iterator[tuple[int, Any]]]:
    """(`parquet` or `jsonl`, the file's rows): Parquet by its first bytes (PAR1) or name."""
    head = file.read(len(PARQUET_MAGIC))
    file.seek(0)
    if head == PARQUET_MAGIC or name.lower().endswith(".parquet"):
        return "parquet", _parquet_rows(file)
    return "jsonl", json_lines(file)


def json_lines(file: IO[bytes]) -> Iterator[tuple[int, Any]]:
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
