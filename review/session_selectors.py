"""Reads for review sessions: the sessions a user works in, progress, each item's labels,
agreement per label schema and the items where reviewers differ."""

from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.http import Http404

from agents import selectors as agent_selectors
from feedback.label_values import label_given
from feedback.models import LabelSchema, Rating
from review.agreement import Agreement, agreement
from review.agreement_selectors import LEVEL_OF_INPUT, comparable
from review.models import ReviewItem, ReviewSession, ReviewSkip, ReviewSlot, SlotState
from review.queue import claimable, is_assigned, session_schemas, visible_items
from reviewapp import roles


def sessions_for_user(user: AbstractBaseUser) -> QuerySet[ReviewSession]:
    """Admins see every session; reviewers those assigned to them or to one of their groups."""
    sessions = ReviewSession.objects.all()
    if roles.is_admin(user):
        return sessions
    if not roles.can_review(user):
        return sessions.none()
    mine = Q(assigned_users=user) | Q(assigned_groups__in=user.groups.all())
    return sessions.filter(pk__in=ReviewSession.objects.filter(mine).values("pk"))


def session_get_for_user(user: AbstractBaseUser, pk: int) -> ReviewSession:
    try:
        session = ReviewSession.objects.get(pk=pk)
    except (ReviewSession.DoesNotExist, ValueError):
        raise Http404("No such review session.") from None
    if not is_assigned(session, user):
        raise Http404("No such review session.")  # whether it exists is not theirs to know
    return session


@dataclass(frozen=True)
class ReviewerProgress:
    reviewer: str
    done: int
    skipped: int


@dataclass(frozen=True)
class Progress:
    items: int
    items_done: int  # items with all the reviewers they need
    labels_done: int
    labels_needed: int  # items × reviewers per item
    mine_done: int
    mine_skipped: int
    mine_available: int  # items that still need a reviewer and that this user has not touched
    reviewers: list[ReviewerProgress] = field(default_factory=list)

    @property
    def percent(self) -> int:
        if not self.labels_needed:
            return 0
        return int(100 * self.labels_done / self.labels_needed)


def session_progress(session: ReviewSession, user: AbstractBaseUser) -> Progress:
    """Done / needed for the session and for each reviewer (one aggregate per table)."""
    items = ReviewItem.objects.filter(session=session).aggregate(
        total=Count("pk"),
        done=Count("pk", filter=Q(done_count__gte=session.reviewers_per_item)),
        labels=Sum("done_count"),
    )
    done_by = dict(
        ReviewSlot.objects.filter(session=session, state=SlotState.DONE)
        .values_list("reviewer__username")
        .annotate(n=Count("pk"))
    )
    skipped_by = dict(
        ReviewSkip.objects.filter(item__session=session)
        .values_list("reviewer__username")
        .annotate(n=Count("pk"))
    )
    touched = ReviewSlot.objects.filter(session=session, reviewer=user).values("item_id")
    skipped = ReviewSkip.objects.filter(item__session=session, reviewer=user).values("item_id")
    available = (
        ReviewItem.objects.filter(session=session, done_count__lt=session.reviewers_per_item)
        .exclude(pk__in=touched)
        .exclude(pk__in=skipped)
        .count()
    )
    names = sorted(set(done_by) | set(skipped_by), key=lambda n: (n is None, n or ""))
    return Progress(
        items=items["total"],
        items_done=items["done"],
        labels_done=items["labels"] or 0,
        labels_needed=items["total"] * session.reviewers_per_item,
        mine_done=done_by.get(user.get_username(), 0),
        mine_skipped=skipped_by.get(user.get_username(), 0),
        mine_available=available,
        reviewers=[
            ReviewerProgress(n or "(deleted user)", done_by.get(n, 0), skipped_by.get(n, 0))
            for n in names
        ],
    )


# An item as one user stands to it: labelled by them, held by them, skipped by them, still
# needing a reviewer (they may take it), or with all its reviewers without them.
ITEM_STATES = ("done", "claimed", "skipped", "open", "full")


def session_items(session: ReviewSession, user: AbstractBaseUser) -> QuerySet[ReviewItem]:
    """The session's items the user may see, oldest first, each annotated with its turn's
    `request_id` and `deployment_id`, the user's `my_state` (ITEM_STATES) and the lease of
    their claim (`my_lease_until`)."""
    mine = ReviewSlot.objects.filter(item=OuterRef("pk"), reviewer=user)
    skipped = ReviewSkip.objects.filter(item=OuterRef("pk"), reviewer=user)
    room = ReviewSlot.objects.filter(claimable(), item=OuterRef("pk"))
    return (
        visible_items(session, user)
        .annotate(
            request_id=F("turn__databricks_request_id"),
            deployment_id=F("turn__deployment_id"),
            my_slot=Subquery(mine.values("state")[:1]),
            my_lease_until=Subquery(mine.values("lease_until")[:1]),
        )
        .annotate(
            my_state=Case(
                When(my_slot=SlotState.DONE, then=Value("done")),
                When(my_slot=SlotState.CLAIMED, then=Value("claimed")),
                When(Exists(skipped), then=Value("skipped")),
                When(Exists(room), then=Value("open")),
                default=Value("full"),
            )
        )
        .order_by("pk")
    )


@dataclass(frozen=True)
class ItemPlace:
    state: str  # ITEM_STATES
    lease_until: datetime | None  # of the user's claim


def item_place(item: ReviewItem, user: AbstractBaseUser) -> ItemPlace:
    """Where the user stands on one item, as `session_items` says it for each (its states in
    the same order), in one to three small queries."""
    slot = ReviewSlot.objects.filter(item=item, reviewer=user).values_list("state", "lease_until")
    found = slot.first()
    if found is not None:
        return ItemPlace("done" if found[0] == SlotState.DONE else "claimed", found[1])
    if ReviewSkip.objects.filter(item=item, reviewer=user).exists():
        return ItemPlace("skipped", None)
    if ReviewSlot.objects.filter(claimable(), item=item).exists():
        return ItemPlace("open", None)
    return ItemPlace("full", None)


def items_of_reviewer(session: ReviewSession, user: AbstractBaseUser) -> list[int]:
    """The ids of the items this user labelled, holds or skipped, in the session's order: what
    j/k walk through."""
    held = ReviewSlot.objects.filter(session=session, reviewer=user).values_list(
        "item_id", flat=True
    )
    skipped = ReviewSkip.objects.filter(item__session=session, reviewer=user).values_list(
        "item_id", flat=True
    )
    return sorted(set(held) | set(skipped))


def item_labels(item: ReviewItem) -> list[tuple[str, Rating]]:
    """(reviewer, current label) of each done slot, in the order they were given: each
    reviewer's current rating of the turn (a newer version from another page counts, as it
    does for agreement), else the one the slot saved (a deleted reviewer's)."""
    slots = (
        ReviewSlot.objects.filter(item=item, state=SlotState.DONE, rating__isnull=False)
        .select_related("reviewer", "rating")
        .order_by("updated_at", "pk")
    )
    current = {
        rating.reviewer_id: rating
        for rating in Rating.objects.filter(
            request_id=item.turn_id, is_current=True, reviewer__isnull=False
        )
    }
    return [
        (
            s.reviewer.get_username() if s.reviewer else "(deleted user)",
            current.get(s.reviewer_id, s.rating),
        )
        for s in slots
    ]


def my_label(item: ReviewItem, user: AbstractBaseUser) -> Rating | None:
    slot = ReviewSlot.objects.filter(item=item, reviewer=user).select_related("rating").first()
    if slot is None or slot.state != SlotState.DONE:
        return None
    # The turn may have a newer version from the chat page since; the current one counts.
    return Rating.objects.filter(request=item.turn_id, reviewer=user, is_current=True).first()


def _labels_by_item(session: ReviewSession) -> dict[int, dict[int, dict]]:
    """{item id: {reviewer id: text assessment}} of the items with two or more labels, from
    each reviewer's current rating of the turn (a newer version from the chat page counts)."""
    slots = ReviewSlot.objects.filter(
        session=session, state=SlotState.DONE, item__done_count__gte=2, reviewer__isnull=False
    ).values_list("item_id", "item__turn_id", "reviewer_id")
    item_of = {(turn_id, reviewer_id): item_id for item_id, turn_id, reviewer_id in slots}
    ratings = Rating.objects.filter(
        request_id__in={turn_id for turn_id, _ in item_of}, is_current=True
    ).values_list("request_id", "reviewer_id", "text_assessment")
    out: dict[int, dict[int, dict]] = {}
    for turn_id, reviewer_id, text in ratings:
        item_id = item_of.get((turn_id, reviewer_id))
        if item_id is not None:
            out.setdefault(item_id, {})[reviewer_id] = text or {}
    return out


@dataclass(frozen=True)
class SchemaAgreement:
    schema: LabelSchema
    agreement: Agreement


def session_agreement(session: ReviewSession) -> list[SchemaAgreement]:
    """Per feedback label schema that has a level (thumbs, categories, numbers): agreement over
    the items with two or more labels."""
    by_item = _labels_by_item(session)
    out = []
    for schema in session_schemas(session):
        level = LEVEL_OF_INPUT.get(schema.input_type)
        if schema.is_expectation or level is None:
            continue
        labels = {}
        for item_id, by_reviewer in by_item.items():
            given = {r: label_given(text, schema) for r, text in by_reviewer.items()}
            given = {r: v for r, v in given.items() if v is not None}
            labels[item_id] = comparable(given, level)
        out.append(SchemaAgreement(schema, agreement(labels, level)))
    return out


@dataclass(frozen=True)
class Disagreement:
    item: ReviewItem
    schemas: list[str]  # the label schemas its reviewers answered differently
    labels: list[tuple[str, Rating]]


def session_disagreements(
    session: ReviewSession, user: AbstractBaseUser, *, limit: int = 200
) -> list[Disagreement]:
    """Items whose reviewers gave different values for a feedback label schema, oldest first;
    settled items too (they show the final label). Only items the user may see: an item of a
    deployment hidden from them is a 404 on its own, so its question and labels are not shown
    here either."""
    by_item = _labels_by_item(session)
    hidden = set(
        ReviewItem.objects.filter(session=session)
        .exclude(pk__in=visible_items(session, user).values("pk"))
        .values_list("pk", flat=True)
    )
    by_item = {pk: labels for pk, labels in by_item.items() if pk not in hidden}
    schemas = [s for s in session_schemas(session) if not s.is_expectation]
    differing: dict[int, list[str]] = {}
    for item_id, by_reviewer in sorted(by_item.items()):
        names = []
        for schema in schemas:
            values = {
                repr(v)
                for v in (label_given(t, schema) for t in by_reviewer.values())
                if v is not None
            }
            if len(values) > 1:
                names.append(schema.name)
        if names:
            differing[item_id] = names
        if len(differing) >= limit:
            break
    items = (
        ReviewItem.objects.filter(pk__in=differing)
        .select_related("turn", "consensus", "settled_by")
        # Up to `limit` turns: without their traces and raw bodies (tens of MB each, at times).
        .defer(*(f"turn__{column}" for column in agent_selectors.HEAVY_COLUMNS))
    )
    return [
        Disagreement(item, differing[item.pk], item_labels(item))
        for item in sorted(items, key=lambda i: i.pk)
    ]
