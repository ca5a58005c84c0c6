"""`manage.py import_logs --deployment ID --owner USERNAME FILE`: a Databricks request log
(JSON lines or Parquet) into the request log of a deployment; prints what was added, what was
logged already, and each row that could not be used, by line."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from agents.models import Deployment
from inference_tables import readers
from inference_tables.imports import import_request_log


class Command(BaseCommand):
    help = "Import a request log (Databricks inference-table rows) into a deployment."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="a .jsonl or .parquet file")
        parser.add_argument("--deployment", type=int, required=True, help="the deployment's id")
        parser.add_argument(
            "--owner", required=True, help="username owning the imported conversations"
        )

    def handle(self, *args, **options) -> None:
        try:
            deployment = Deployment.objects.get(pk=options["deployment"])
        except Deployment.DoesNotExist:
            raise CommandError(f"No deployment has the id {options['deployment']}.") from None
        try:
            owner = get_user_model().objects.get_by_natural_key(options["owner"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user is named {options['owner']!r}.") from None
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        with path.open("rb") as file:
            format_name, rows = readers.rows_of(file, path.name)
            report = import_request_log(deployment, rows, owner=owner)
        where = "row" if format_name == "parquet" else "line"
        for at, why in report.problems:
            self.stderr.write(f"{path.name} {where} {at}: {why}")
        if report.more_problems:
            self.stderr.write(f"... and {report.more_problems} more rows that could not be used")
        self.stdout.write(
            f"{report.added} turns added, {report.already_logged} logged already, "
            f"{report.rejected} rows not used."
        )
