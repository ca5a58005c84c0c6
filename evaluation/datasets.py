"""Datasets: an upload (JSON lines or CSV) checked row by row and saved as the name's next
version, in one transaction; the reads runs and pages use.

A row is an object of columns. The expectation columns have types: `expected_response` text,
`expected_facts` and `guidelines` lists of texts (in CSV, a JSON list, or one item a line).
A row that cannot be used is reported with its line; the upload then saves nothing, unless
`skip_bad_rows`, when the good rows are saved and the bad ones listed.
"""

import csv
import io
import json
from dataclasses import dataclass, field
from typing import IO, Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404

from evaluation.models import DATASET_NAME, Dataset, DatasetRow, DatasetVersion
from inference_tables.readers import json_lines

MAX_ROWS = 100_000
MAX_PROBLEMS = 100  # listed; past it they are counted
LIST_COLUMNS = ("expected_facts", "guidelines")
TEXT_COLUMNS = ("expected_response",)
EXPECTATION_COLUMNS = TEXT_COLUMNS + LIST_COLUMNS


class DatasetRejected(ValidationError):
    """The upload saved nothing: `problems` [(line, why)] says which rows and why."""

    def __init__(self, message: str, problems: list[tuple[int, str]]):
        super().__init__(message)
        self.problems = problems


@dataclass
class Upload:
    version: DatasetVersion
    skipped: list[tuple[int, str]] = field(default_factory=list)


def dataset_upload(
    *,
    name: str,
    file: IO[bytes],
    file_name: str,
    user: AbstractBaseUser | None,
    skip_bad_rows: bool = False,
) -> Upload:
    """`name`'s next version (the dataset made if new), or DatasetRejected / ValidationError
    with nothing saved."""
    DATASET_NAME(name)
    rows, problems = _read(file, file_name)
    if problems and not skip_bad_rows:
        raise DatasetRejected(
            f"{len(problems)} row(s) cannot be used; nothing was saved (skip them with "
            "skip_bad_rows).",
            problems,
        )
    if not rows:
        raise DatasetRejected("The file holds no usable row; nothing was saved.", problems)
    if len(rows) > MAX_ROWS:
        raise DatasetRejected(f"A dataset version holds at most {MAX_ROWS:,} rows.", [])
    columns: dict[str, None] = {}
    for _, data in rows:
        columns.update(dict.fromkeys(data))
    with transaction.atomic():
        dataset, _ = Dataset.objects.get_or_create(name=name)
        # One upload at a time per dataset: two at once still get versions n and n + 1.
        Dataset.objects.select_for_update().filter(pk=dataset.pk).exists()
        last = dataset.versions.order_by("-number").values_list("number", flat=True).first()
        version = DatasetVersion.objects.create(
            dataset=dataset,
            number=(last or 0) + 1,
            file_name=file_name[:255],
            columns=list(columns),
            row_count=len(rows),
            created_by=user,
        )
        DatasetRow.objects.bulk_create(
            DatasetRow(version=version, position=n, data=data)
            for n, (_, data) in enumerate(rows, 1)
        )
    return Upload(version, problems[:MAX_PROBLEMS])


def _read(file: IO[bytes], file_name: str) -> tuple[list[tuple[int, dict]], list]:
    """The usable rows (line, data) and the problems (line, why)."""
    as_csv = file_name.lower().endswith(".csv")
    if as_csv:
        try:
            found = _csv_rows(file.read().decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise DatasetRejected("The file is not UTF-8 text.", []) from None
    else:
        found = json_lines(file)  # a line that is not JSON comes as its problem
    rows, problems = [], []
    for line, data in found:
        try:
            if isinstance(data, Exception):
                raise data
            rows.append((line, _checked(data, as_csv)))
        except ValueError as exc:
            problems.append((line, str(exc)))
    return rows, problems


def _csv_rows(text: str):
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        return
    for data in reader:
        # DictReader puts extra cells under None: the line has more cells than the header.
        yield (
            reader.line_num,
            (ValueError("More cells than the header has columns.") if None in data else data),
        )


def _checked(data: Any, from_csv: bool) -> dict:
    if not isinstance(data, dict) or not data:
        raise ValueError("A row must be an object of columns.")
    if not any(column not in EXPECTATION_COLUMNS for column in data):
        raise ValueError("A row needs an input column besides its expectations.")
    for column in TEXT_COLUMNS:
        if column in data and not isinstance(data[column], str | type(None)):
            raise ValueError(f"{column} must be text.")
    for column in LIST_COLUMNS:
        if column not in data or data[column] in (None, ""):
            continue
        value = data[column]
        if from_csv:
            value = _csv_list(value)
            data[column] = value
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"{column} must be a list of texts.")
    return data


def _csv_list(value: str) -> list:
    if value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError("A list column holds a JSON list, or one item a line.") from None
    return [item.strip() for item in value.splitlines() if item.strip()]


def dataset_version(name: str, number: int | None = None) -> DatasetVersion:
    """`name@number`, or its newest version; Http404 when there is none."""
    versions = DatasetVersion.objects.select_related("dataset").filter(dataset__name=name)
    version = (versions.filter(number=number) if number else versions.order_by("-number")).first()
    if version is None:
        raise Http404(f"No dataset {name}{f'@{number}' if number else ''}.")
    return version
