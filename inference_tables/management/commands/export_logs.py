"""`manage.py export_logs --kind requests|assessments --format parquet --since 2026-11-01
--out FILE`: every turn (or rating version) as its Databricks inference table, written as it is
read, with a progress bar on stderr."""

import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date

from inference_tables import exports, formats


class Command(BaseCommand):
    help = "Export the request log or the assessment log (JSONL, CSV or Parquet)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--kind", choices=exports.KINDS, required=True)
        parser.add_argument("--format", choices=list(formats.FORMATS), default="jsonl")
        parser.add_argument("--since", help="first day (YYYY-MM-DD), inclusive")
        parser.add_argument("--until", help="last day (YYYY-MM-DD), inclusive")
        parser.add_argument("--deployment", type=int, help="one deployment's id")
        parser.add_argument("--out", required=True, help="the file to write ('-': stdout)")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args, **options) -> None:
        since, until = _day(options["since"], "--since"), _day(options["until"], "--until")
        if since and until and since > until:
            raise CommandError("--until is before --since.")
        kind = options["kind"]
        rows = exports.everything(
            kind, deployment_id=options["deployment"], since=since, until=until
        )
        total = rows.count()
        noun = "turns" if kind == "requests" else "ratings"
        progress = None if options["quiet"] else _Progress(total, noun)
        made = exports.export(
            kind, options["format"], rows, read=progress.step if progress else None
        )
        out = options["out"]
        target = sys.stdout.buffer if out == "-" else Path(out).open("wb")  # noqa: SIM115
        written = 0
        try:
            for chunk in made.chunks:
                target.write(chunk)
                written += len(chunk)
        finally:
            if target is not sys.stdout.buffer:
                target.close()
        if progress is not None:
            progress.done(written)


def _day(text: str | None, option: str):
    if not text:
        return None
    try:
        day = parse_date(text)
    except ValueError:
        day = None
    if day is None:
        raise CommandError(f"{option} {text!r} is not a day (YYYY-MM-DD).")
    return day


class _Progress:
    """A one-line bar on stderr: how many of the rows are read, the rate and the time left."""

    WIDTH = 30

    def __init__(self, total: int, noun: str) -> None:
        self.total, self.noun, self.read = total, noun, 0
        self.started = time.monotonic()

    def step(self, rows: int) -> None:
        self.read += rows
        self._draw()

    def _draw(self) -> None:
        share = min(1.0, self.read / self.total) if self.total else 1.0
        filled = int(share * self.WIDTH)
        took = time.monotonic() - self.started
        rate = self.read / took if took > 0 else 0.0
        left = max(0, self.total - self.read) / rate if rate else 0.0
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        sys.stderr.write(
            f"\r[{bar}] {self.read:,}/{self.total:,} {self.noun}  {rate:,.0f}/s  "
            f"{left:,.0f} s left "
        )
        sys.stderr.flush()

    def done(self, size: int) -> None:
        self.read = self.total
        self._draw()
        sys.stderr.write(f"\n{size:,} bytes written in {time.monotonic() - self.started:.1f} s\n")
