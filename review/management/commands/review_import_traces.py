from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from review.management.commands._options import add_common_arguments, error_text, load
from review.mlflow_import import MAX_IMPORT, session_import_mlflow_traces


class Command(BaseCommand):
    help = (
        "Import the traces of an MLflow experiment as turns of a deployment and add them to a "
        "review session. Traces already logged here are added, not imported twice. Example: "
        "manage.py review_import_traces --session 3 --user alice --deployment 2 "
        "--experiment-id 1 --filter \"tags.topic = 'billing'\" --max-results 200"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_common_arguments(parser, deployment_required=True)
        parser.add_argument(
            "--filter",
            default="",
            help="An MLflow trace search filter, e.g. \"attributes.status = 'OK'\" or "
            "\"tags.topic = 'billing'\" (default: every trace).",
        )
        parser.add_argument(
            "--max-results",
            type=int,
            default=100,
            help=f"At most this many traces, newest first (1 to {MAX_IMPORT:,}; default 100).",
        )

    def handle(self, *args, **options) -> None:
        session, user, deployment = load(options)
        try:
            result = session_import_mlflow_traces(
                session=session,
                user=user,
                deployment=deployment,
                experiment_id=options["experiment_id"],
                filter_string=options["filter"],
                max_results=options["max_results"],
            )
        except (ValidationError, PermissionDenied) as exc:
            text = error_text(exc) if isinstance(exc, ValidationError) else str(exc)
            raise CommandError(f"Nothing was imported. {text}") from None
        self.stdout.write(
            f"{result.found} trace(s) found, {result.imported} imported, {result.added} "
            f"added to session {session.pk}, {result.skipped} skipped."
        )
