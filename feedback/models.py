"""Ratings, the questions they answer, and their delivery to a feedback sink.

A rating is written once and never changed: a reviewer who changes their mind writes a new one,
which becomes the current one (`is_current`); history stays. Each rating gets one `Delivery` per
sink, which a Celery task claims, posts and records (`DeliveryAttempt`, one row per try).
"""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from agents.models import Deployment, FeedbackSink, RequestLog

SOURCE_TYPE_HUMAN = "human"


class LabelKind(models.TextChoices):
    """MLflow's label schema types: a judgement of the answer, or what the answer should be."""

    FEEDBACK = "feedback", "Feedback (a judgement of the answer)"
    EXPECTATION = "expectation", "Expectation (what the answer should have been)"


class InputType(models.TextChoices):
    THUMBS = "thumbs", "Thumbs up / down"
    CATEGORICAL = "categorical", "One of several options"
    CATEGORICAL_LIST = "categorical_list", "Any of several options"
    NUMERIC = "numeric", "A number between min and max"
    TEXT = "text", "Free text"
    TEXT_LIST = "text_list", "A list of texts"


# The rating name of a document's relevance, and names a label schema may not take.
CHUNK_RELEVANCE = "chunk_relevance"
RESERVED_RATING_NAMES = {CHUNK_RELEVANCE, "comment", "chunk_comment", "retrieval_comment"}
# The expectation stored as the Databricks record's `suggested_output` ("a better answer").
EXPECTED_RESPONSE = "expected_response"
NAME_PATTERN = r"^[a-z][a-z0-9_]*\Z"


class LabelSchema(models.Model):
    """One thing a reviewer labels, shared by every deployment and review session that uses it.

    Modelled on MLflow's label schemas (name, feedback/expectation, input type, instruction,
    comment), so a session can be mirrored there. `name` is the key of the rating it produces.
    """

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[
            RegexValidator(
                NAME_PATTERN,
                "Use lowercase letters, digits and underscores, starting with a letter "
                "(it is the rating's key, e.g. answer_correct).",
            )
        ],
        error_messages={"unique": "A label schema with this name already exists."},
    )
    title = models.CharField(max_length=500, help_text="The question the reviewer sees.")
    instruction = models.TextField(blank=True, help_text="Markdown: how to decide.")
    kind = models.CharField(max_length=12, choices=LabelKind.choices, default=LabelKind.FEEDBACK)
    input_type = models.CharField(max_length=16, choices=InputType.choices)
    options = models.JSONField(
        default=list,
        blank=True,
        help_text='Categorical (list) only: a list of strings, e.g. ["yes", "no"].',
    )
    min_value = models.FloatField(null=True, blank=True, help_text="Numeric only.")
    max_value = models.FloatField(null=True, blank=True, help_text="Numeric only.")
    step = models.FloatField(
        null=True, blank=True, help_text="Numeric only: values are min + a whole number of steps."
    )
    max_length = models.PositiveIntegerField(
        null=True, blank=True, help_text="Text (list) only: characters per text."
    )
    max_count = models.PositiveIntegerField(
        null=True, blank=True, help_text="Text list only: how many texts at most."
    )
    enable_comment = models.BooleanField(
        default=False, help_text="Reviewers may say why, next to their label."
    )
    required = models.BooleanField(
        default=False, help_text="A label in a review session cannot be saved without it."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: {self.title}"

    @property
    def is_expectation(self) -> bool:
        return self.kind == LabelKind.EXPECTATION

    @property
    def text_field(self) -> str:
        """Where a text assessment keeps its answers: `ratings` or `expectations`."""
        return "expectations" if self.is_expectation else "ratings"

    @property
    def takes_list(self) -> bool:
        return self.input_type in (InputType.CATEGORICAL_LIST, InputType.TEXT_LIST)

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.name in RESERVED_RATING_NAMES:
            errors["name"] = [f"{self.name!r} is used by the app itself; pick another name."]
        if self.name == EXPECTED_RESPONSE and (
            self.kind != LabelKind.EXPECTATION or self.input_type != InputType.TEXT
        ):
            errors["name"] = [f"{EXPECTED_RESPONSE} is the better answer: a text expectation."]
        if self.input_type in (InputType.CATEGORICAL, InputType.CATEGORICAL_LIST):
            options = self.options
            if (
                not isinstance(options, list)
                or len(options) < 2
                or not all(isinstance(o, str) and o.strip() for o in options)
            ):
                errors["options"] = ["Give at least two options, as a list of non-empty strings."]
            elif len(set(options)) != len(options):
                errors["options"] = ["Options must be different from each other."]
        elif self.options:
            errors["options"] = ["Only categorical label schemas have options."]
        if self.input_type == InputType.NUMERIC:
            if self.min_value is None or self.max_value is None:
                errors["max_value"] = ["Give both a minimum and a maximum."]
            elif self.min_value >= self.max_value:
                errors["max_value"] = ["The maximum must be greater than the minimum."]
            elif self.step is not None and not 0 < self.step <= self.max_value - self.min_value:
                errors["step"] = ["The step must be above 0 and at most max - min."]
        elif any(v is not None for v in (self.min_value, self.max_value, self.step)):
            errors["min_value"] = ["Only numeric label schemas have a minimum, maximum and step."]
        if self.max_length is not None and self.input_type not in (
            InputType.TEXT,
            InputType.TEXT_LIST,
        ):
            errors["max_length"] = ["Only text label schemas have a maximum length."]
        if self.max_count is not None and self.input_type != InputType.TEXT_LIST:
            errors["max_count"] = ["Only text list label schemas have a maximum count."]
        if errors:
            raise ValidationError(errors)


# What an admin or the API may set on a label schema.
LABEL_SCHEMA_FIELDS = (
    "name",
    "title",
    "instruction",
    "kind",
    "input_type",
    "options",
    "min_value",
    "max_value",
    "step",
    "max_length",
    "max_count",
    "enable_comment",
    "required",
)


class DeploymentLabelSchema(models.Model):
    """A deployment's default label schemas, in order: what the chat's rating bar asks."""

    deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, related_name="label_schema_links"
    )
    schema = models.ForeignKey(
        LabelSchema, on_delete=models.PROTECT, related_name="deployment_links"
    )
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "schema"], name="deployment_label_schema_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.deployment_id}: {self.schema_id}"


class Rating(models.Model):
    """One reviewer's judgement of one answer, in the Databricks feedback record's shape.

    `text_assessment` is {ratings: {name: {value, rationale?}}, expectations: {name: {value}},
    free_text_comment, suggested_output}; `retrieval_assessments` is [{position, step_id,
    ratings, free_text_comment}], `step_id` being the retriever span's id; an item without
    `position` rates the retrieval as a whole.

    A rating with no `reviewer` is a deleted user's, an admin's consensus (`source_id`
    "consensus:<admin>") or one relayed for another source through the Databricks feedback API
    (`relayed_by` the token's user); those are current per (turn, source_id).
    """

    request = models.ForeignKey(RequestLog, on_delete=models.CASCADE, related_name="ratings")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="ratings")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="ratings"
    )
    source_id = models.CharField(max_length=254, help_text="The reviewer's email, or username.")
    source_type = models.CharField(max_length=16, default=SOURCE_TYPE_HUMAN)
    text_assessment = models.JSONField(default=dict)
    retrieval_assessments = models.JSONField(default=list)
    is_current = models.BooleanField(default=True)
    relayed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The API user who sent it for `source_id` (Databricks feedback API).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        permissions = [
            (
                "relay_feedback",
                "Can send feedback for other sources through the Databricks feedback API",
            )
        ]
        indexes = [
            models.Index(fields=["request", "reviewer", "-created_at"]),
            models.Index(fields=["deployment", "-created_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "reviewer"],
                condition=models.Q(is_current=True),
                name="rating_one_current_per_reviewer",
            )
        ]

    def __str__(self) -> str:
        return f"Rating {self.pk} of {self.request_id} by {self.source_id}"

    @property
    def document_rating_count(self) -> int:
        """Rated documents; a rating of a whole retrieval (no position) is not one."""
        return sum(1 for doc in self.retrieval_assessments if "position" in doc)

    @property
    def retrieval_verdicts(self) -> list[str]:
        """The ratings of whole retrievals (no position), as "name: value" for the status line."""
        return [
            f"{name}: {given.get('value')}"
            for doc in self.retrieval_assessments
            if "position" not in doc
            for name, given in doc.get("ratings", {}).items()
        ]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Delivered"
    FAILED = "failed", "Failed"
    # A newer version of the same reviewer's rating was made before this one went out; the
    # newer one carries everything and is sent instead, so the sink never gets them out of order.
    SUPERSEDED = "superseded", "Replaced by a newer version"


class Delivery(models.Model):
    """A rating's way to one sink. Claimed by a conditional UPDATE, so it is sent at most once
    after it succeeded, whatever the broker redelivers."""

    rating = models.ForeignKey(Rating, on_delete=models.CASCADE, related_name="deliveries")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="deliveries")
    sink = models.CharField(max_length=24, choices=FeedbackSink.choices)
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # Transient failures are retried until DELIVERY_GIVE_UP_AFTER_SECONDS after this (the
    # rating's time, or the last "send again").
    retrying_since = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    # Claims taken back after their lease ran out (the worker died mid-send); a delivery that
    # keeps killing workers fails instead of looping.
    lost_claims = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # What the sink gave back that a later try or a later rating needs (MLflow assessment ids).
    sink_state = models.JSONField(default=dict, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["deployment", "status"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["rating", "sink"], name="delivery_one_per_sink")
        ]

    def __str__(self) -> str:
        return f"Delivery {self.pk} ({self.status})"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_rows")
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=1000, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    batch_size = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["started_at", "pk"]

    def __str__(self) -> str:
        return (
            f"Attempt {self.pk} of delivery {self.delivery_id}: {self.status_code or 'no answer'}"
        )
