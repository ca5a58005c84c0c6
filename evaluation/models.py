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
