"""Datasets for batch and evaluation runs (issue 14): named, versioned sets of rows. A new
upload under a name is a new version; runs keep the version they used, so a version never
changes once saved."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

DATASET_NAME = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z",
    "Use letters, digits, '.', '_' or '-' (a name is written name@version in run files).",
)


class Dataset(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[DATASET_NAME])
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DatasetVersion(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    file_name = models.CharField(max_length=255, blank=True)
    columns = models.JSONField(
        default=list, help_text="Every column a row has, in first-seen order."
    )
    row_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="dataset_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name}@{self.number}"


class DatasetRow(models.Model):
    """One row: its columns as given (`${data.<column>}` in a run file), expectations
    (`expected_response`, `expected_facts`, `guidelines`) among them."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="rows")
    position = models.PositiveIntegerField(help_text="From 1, in the file's order.")
    data = models.JSONField()

    class Meta:
        ordering = ["version", "position"]
        constraints = [
            models.UniqueConstraint(fields=["version", "position"], name="dataset_row_unique")
        ]

    def __str__(self) -> str:
        return f"{self.version} row {self.position}"


RUN_NAME = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z",
    "Use letters, digits, '.', '_' or '-' (the CLI names runs this way).",
)


class RunKind(models.TextChoices):
    BATCH = "batch", "Batch run"  # a dataset's rows sent to a deployment
    EVALUATION = "evaluation", "Evaluation run"  # evaluators scoring a batch run's answers


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class Run(models.Model):
    """A batch run (rows of a dataset version sent to a deployment, each answer a logged turn)
    or an evaluation run (evaluators scoring a batch run's answers). Its rows are worked by
    Celery lanes (evaluation/lanes.py); `heartbeat_at` says a lane is alive."""

    name = models.CharField(max_length=100, unique=True, validators=[RUN_NAME])
    kind = models.CharField(max_length=16, choices=RunKind.choices)
    # A deployment's runs go with it, as its turns do; an evaluation run with its base run.
    deployment = models.ForeignKey(
        "agents.Deployment", null=True, on_delete=models.CASCADE, related_name="runs"
    )
    dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="runs"
    )
    base_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="evaluations"
    )
    column_mapping = models.JSONField(default=dict)
    evaluators = models.JSONField(default=list, help_text="The checked evaluator specs.")
    concurrency = models.PositiveIntegerField(default=8)
    spec = models.JSONField(default=dict, help_text="The run file as it was given.")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    row_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Whose turns its rows are; a run whose creator was deleted sends no more.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name


class RowStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CLAIMED = "claimed", "In flight"
    DONE = "done", "Done"


class RunRow(models.Model):
    """One dataset row in a run. A lane claims it (`claim`, `lease_until`, renewed while it
    works); a claim whose lease ran out is a dead worker's and is taken again. `turn` is the
    answer: the row's own turn in a batch run, the base run's in an evaluation run. `scores`
    maps each evaluator to {value, rationale} or {error}."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="rows")
    position = models.PositiveIntegerField()
    dataset_row = models.ForeignKey(DatasetRow, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=8, choices=RowStatus.choices, default=RowStatus.PENDING)
    claim = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="Who holds or held it.")
    attempts = models.PositiveIntegerField(default=0)
    turn = models.ForeignKey(
        "agents.RequestLog", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    scores = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="run_row_unique")]
        indexes = [models.Index(fields=["run", "status", "position"], name="run_row_todo")]

    def __str__(self) -> str:
        return f"{self.run} row {self.position}"
