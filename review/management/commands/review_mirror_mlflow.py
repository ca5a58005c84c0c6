from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from review.management.commands._options import add_common_arguments, error_text, load
from review.mlflow_dataset import session_expectations_to_mlflow_dataset
from review.mlflow_mirror import session_mirror_to_mlflow


class Command(BaseCommand):
    help = (
        "Mirror a review session to an MLflow experiment: its label schemas, a review queue "
        "with its reviewers, its traced items and which are complete. Run again to update. "
        "With --dataset NAME, also write the items' expectations to that evaluation dataset."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_common_arguments(parser, deployment_required=False)
        parser.add_argument("--dataset", default="", help="Evaluation dataset name (optional).")

    def handle(self, *args, **options) -> None:
        session, user, deployment = load(options)
        common = {
            "session": session,
            "user": user,
            "experiment_id": options["experiment_id"],
            "deployment": deployment,
        }
        try:
            mirror = session_mirror_to_mlflow(**common)
            self.stdout.write(
                f"Queue {mirror.queue_id}: {len(mirror.schema_ids)} label schema(s) "
                f"({mirror.schemas_created} created, {mirror.schemas_updated} updated), "
                f"{mirror.items_attached} item(s) in the queue, {mirror.items_completed} marked "
                f"complete; {mirror.items_not_in_experiment} item(s) with a trace outside the "
                f"experiment and {mirror.items_without_trace} without a trace left out."
            )
            if options["dataset"]:
                data = session_expectations_to_mlflow_dataset(**common, name=options["dataset"])
                self.stdout.write(
                    f"Dataset {data.dataset_id}: {data.records} record(s) ({data.inserted} new, "
                    f"{data.updated} updated); {data.items_without_expectations} item(s) "
                    f"without expectations, {data.items_with_conflicts} with reviewers who "
                    "differ (settle them to include those values)."
                )
        except (ValidationError, PermissionDenied) as exc:
            text = error_text(exc) if isinstance(exc, ValidationError) else str(exc)
            raise CommandError(text) from None
