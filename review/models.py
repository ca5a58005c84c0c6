"""Review sessions: a set of turns that reviewers work through, with the label schemas they
answer, who may work in it and how many reviewers each turn needs.

Each item (a turn in the session) has one `ReviewSlot` per reviewer it needs. "Next" claims an
open slot with a conditional UPDATE and a lease, so two reviewers never hold the same slot and a
claim left behind opens again when its lease runs out. A slot is done when its reviewer saved a
label, which is a rating version like any other (feedback.services): it is forwarded the same
way. A reviewer who skips gives their slot back and is not offered that item again.
"""

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from agents.models import Deployment, RequestLog
from feedback.models import LabelSchema, Rating

MAX_REVIEWERS_PER_ITEM = 10


class SessionState(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class ReviewSession(models.Model):
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, help_text="Markdown, shown to every reviewer.")
    label_schemas = models.ManyToManyField(
        LabelSchema, through="SessionLabelSchema", related_name="review_sessions"
    )
    deployments = models.ManyToManyField(Deployment, related_name="review_sessions")
    assigned_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="assigned_review_sessions"
    )
    assigned_groups = models.ManyToManyField(Group, blank=True, related_name="review_sessions")
    reviewers_per_item = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_REVIEWERS_PER_ITEM)]
    )
    due_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=8, choices=SessionState.choices, default=SessionState.OPEN)
    # "Keep adding new matching turns": the requests page's filter (its query string, as a
    # dict), and the newest turn already looked at, so each pull reads only what came since.
    saved_filter = models.JSONField(null=True, blank=True)
    pulled_until_id = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_open(self) -> bool:
        return self.state == SessionState.OPEN


class SessionLabelSchema(models.Model):
    session = models.ForeignKey(
        ReviewSession, on_delete=models.CASCADE, related_name="schema_links"
    )
    schema = models.ForeignKey(LabelSchema, on_delete=models.PROTECT, related_name="session_links")
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["session", "schema"], name="session_label_schema_once")
        ]

    def __str__(self) -> str:
        return f"{self.session_id}: {self.schema_id}"


class ReviewItem(models.Model):
    """A turn to review in a session; items are offered oldest first (by id)."""

    session = models.ForeignKey(ReviewSession, on_delete=models.CASCADE, related_name="items")
    turn = models.ForeignKey(RequestLog, on_delete=models.CASCADE, related_name="review_items")
    done_count = models.PositiveSmallIntegerField(default=0)
    added_at = models.DateTimeField(auto_now_add=True)
    # An admin's final label where reviewers differ: forwarded as the consensus.
    consensus = models.ForeignKey(
        Rating, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    settled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["session", "turn"], name="review_item_turn_once")
        ]

    def __str__(self) -> str:
        return f"Item {self.pk} of session {self.session_id}"


class SlotState(models.TextChoices):
    OPEN = "open", "Open"
    CLAIMED = "claimed", "Claimed"
    DONE = "done", "Done"


class ReviewSlot(models.Model):
    """One reviewer's place on an item. `session` is repeated from the item so that "the
    oldest open slot of this session" is one index range scan."""

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="slots")
    session = models.ForeignKey(ReviewSession, on_delete=models.CASCADE, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="review_slots",
    )
    state = models.CharField(max_length=8, choices=SlotState.choices, default=SlotState.OPEN)
    lease_until = models.DateTimeField(null=True, blank=True)
    rating = models.ForeignKey(
        Rating, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["item_id", "pk"]
        indexes = [
            models.Index(fields=["session", "state", "item"], name="review_slot_queue"),
            models.Index(fields=["reviewer", "session", "state"], name="review_slot_mine"),
            # Next (review.queue._next_slot): the session's claimable slots in item order, and
            # the reviewer's slots in item order, each read by an index-only scan on PostgreSQL.
            models.Index(
                fields=["session", "item", "id"],
                include=["state", "lease_until"],
                condition=models.Q(state__in=["open", "claimed"]),
                name="review_slot_claimable",
            ),
            models.Index(fields=["reviewer", "session", "item"], name="review_slot_mine_items"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "reviewer"],
                condition=models.Q(reviewer__isnull=False),
                name="review_slot_one_per_reviewer",
            )
        ]

    def __str__(self) -> str:
        return f"Slot {self.pk} of item {self.item_id} ({self.state})"


class ReviewSkip(models.Model):
    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="skips")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="review_skips"
    )
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # A reviewer's skips in item order, for Next (review.queue._next_slot).
        indexes = [models.Index(fields=["reviewer", "item"], name="review_skip_mine")]
        constraints = [
            models.UniqueConstraint(fields=["item", "reviewer"], name="review_skip_once")
        ]

    def __str__(self) -> str:
        return f"Skip of item {self.item_id} by {self.reviewer_id}"


class MlflowMirror(models.Model):
    """Where a session is mirrored on an MLflow tracking server (review/mlflow_mirror.py): the
    review queue and the label schemas' ids there, so that mirroring again updates them instead
    of creating more, and a finished item can be marked complete in the queue."""

    session = models.OneToOneField(
        ReviewSession, on_delete=models.CASCADE, related_name="mlflow_mirror"
    )
    # The deployment whose tracking server holds the queue: its credentials are used.
    deployment = models.ForeignKey(
        Deployment, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    tracking_uri = models.CharField(max_length=2000)
    experiment_id = models.CharField(max_length=64)
    queue_id = models.CharField(max_length=64)
    # {label schema name: MLflow schema id ("ls-…")}
    schema_ids = models.JSONField(default=dict)
    mirrored_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Session {self.session_id} → queue {self.queue_id}"
