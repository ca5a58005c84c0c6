"""`manage.py dataset_upload NAME FILE [--skip-bad-rows]`: a JSON lines or CSV file as the
dataset's next version."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from evaluation import datasets


class Command(BaseCommand):
    help = "Upload a dataset version (JSON lines or CSV)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("file")
        parser.add_argument("--skip-bad-rows", action="store_true")

    def handle(self, *args, **options) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        try:
            with path.open("rb") as file:
                made = datasets.dataset_upload(
                    name=options["name"], file=file, file_name=path.name, user=None,
                    skip_bad_rows=options["skip_bad_rows"],
                )  # fmt: skip
        except datasets.DatasetRejected as exc:
            for line, why in exc.problems:
                self.stderr.write(f"{path.name} line {line}: {why}")
            raise CommandError(exc.messages[0]) from None
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        for line, why in made.skipped:
            self.stderr.write(f"{path.name} line {line}: {why} (skipped)")
        version = made.version
        self.stdout.write(f"{version} saved: {version.row_count} rows, columns {version.columns}")
