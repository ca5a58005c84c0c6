"""The reviewer's queue in a session: take the next item, label it, skip it, come back to it;
and the admin's final label where reviewers differ.

"Next" claims a slot by a conditional UPDATE (open, or claimed with a lease that ran out): of
two reviewers who read the same open slot, the second UPDATE matches no row and that reviewer
tries the next one, so no slot is ever held twice. Labels are ratings (feedback.services), so
each is a new version, delivered like any other.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.http import Http404
from django.utils import timezone

from agents import selectors as agent_selectors
from agents.models import Deployment, RequestLog
from feedback import services as feedback_services
from feedback.models import EXPECTED_RESPONSE, Rating
from review import mlflow_mirror, services
from review.models import ReviewItem, ReviewSession, ReviewSkip, ReviewSlot, SlotState
from reviewapp import roles


def session_schemas(session: ReviewSession) -> list:
    """The session's label schemas in the order it asks them."""
    return [link.schema for link in session.schema_links.select_related("schema")]


# Claims lost to another reviewer in a row before Next gives up and says "try again".
MAX_CLAIM_TRIES = 20


def lease() -> timedelta:
    return timedelta(seconds=settings.REVIEW_LEASE_SECONDS)


def is_assigned(session: ReviewSession, user: AbstractBaseUser) -> bool:
    """Admins may work in any session; reviewers in those assigned to them or their groups."""
    if roles.is_admin(user):
        return True
    if not roles.can_review(user):
        return False
    # One request asks this of the same session up to three times (the API's lookup, then each
    # service's own check): the answer is kept on the session object for that request.
    known = session.__dict__.setdefault("_assigned", {})
    if user.pk not in known:
        known[user.pk] = (
            session.assigned_users.filter(pk=user.pk).exists()
            or session.assigned_groups.filter(pk__in=user.groups.all()).exists()
        )
    return known[user.pk]


def check_can_work(session: ReviewSession, user: AbstractBaseUser, *, writing: bool) -> None:
    if not is_assigned(session, user):
        raise PermissionDenied("You are not assigned to this review session.")
    if writing and not session.is_open:
        raise ValidationError("This review session is closed; nothing can be labelled in it.")


def claimable() -> Q:
    """Slots Next may take: open ones, and claims whose lease ran out."""
    return Q(state=SlotState.OPEN) | Q(state=SlotState.CLAIMED, lease_until__lt=timezone.now())


def visible_items(session: ReviewSession, user: AbstractBaseUser):
    """The session's items whose turn is of a deployment the user may see."""
    deployments = agent_selectors.deployments_visible_to(user)
    return ReviewItem.objects.filter(session=session, turn__deployment__in=deployments)


def _item_with_turn(session: ReviewSession, items, pk: int) -> ReviewItem:
    """The item with its turn, without the turn's raw bodies and trace (tens of MB for a big
    trace): the queue shows the question and the answer, and a retrieval label reads the trace
    alone. Its session is the one given, with what is known of it already."""
    heavy = [f"turn__{column}" for column in agent_selectors.HEAVY_COLUMNS]
    item = items.select_related("turn", "turn__deployment").defer(*heavy).get(pk=pk)
    item.session = session
    return item


def item_next(*, session: ReviewSession, reviewer: AbstractBaseUser) -> ReviewItem | None:
    """The reviewer's item to work on: the one they hold (its lease renewed), else the oldest
    item that still needs a reviewer and that they have neither labelled nor skipped, claimed
    for them. None when nothing is left for them."""
    check_can_work(session, reviewer, writing=True)
    services.session_pull_new(session)
    now = timezone.now()
    held = (
        ReviewSlot.objects.filter(session=session, reviewer=reviewer, state=SlotState.CLAIMED)
        .order_by("item_id")
        .first()
    )
    # Renewed only if still theirs: a lease that ran out may have been claimed by another
    # reviewer since the read above, and then this reviewer gets another item.
    if held is not None and ReviewSlot.objects.filter(
        pk=held.pk, reviewer=reviewer, state=SlotState.CLAIMED
    ).update(lease_until=now + lease()):
        return _item_with_turn(session, ReviewItem.objects.all(), held.item_id)
    hidden = _hidden_deployments(reviewer)
    for _ in range(MAX_CLAIM_TRIES):
        found = _next_slot(session, reviewer, hidden)
        if found is None:
            return None
        slot_id, item_id = found
        try:
            with transaction.atomic():
                claimed = ReviewSlot.objects.filter(claimable(), pk=slot_id).update(
                    state=SlotState.CLAIMED,
                    reviewer=reviewer,
                    lease_until=timezone.now() + lease(),
                    updated_at=timezone.now(),
                )
        except IntegrityError:  # the same reviewer took another slot of it meanwhile
            claimed = 0
        if claimed:
            return _item_with_turn(session, ReviewItem.objects.all(), item_id)
    raise ValidationError("Other reviewers took every item offered; press Next again.")


def _hidden_deployments(user: AbstractBaseUser) -> list[int]:
    """The deployments the user may not see (usually none): their turns are not offered."""
    if roles.is_admin(user):
        return []  # admins see every deployment
    visible = agent_selectors.deployments_visible_to(user).values("pk")
    return list(Deployment.objects.exclude(pk__in=visible).values_list("pk", flat=True))


# The oldest claimable slot of the session on an item the reviewer has neither a slot on nor
# skipped. Written in SQL for its plan (bench/review_queue.py): PostgreSQL turns NOT EXISTS into
# an anti join that reads all the reviewer's slots, or probes them once per candidate, while
# these ordered subqueries let it merge two index-only scans (review_slot_claimable, and
# review_slot_mine_items / review_skip_mine), both starting at the session's first claimable
# item. With one reviewer per item that reads almost nothing; with more, it reads the claimable
# slots of the items the reviewer is ahead of the others on.
_NEXT_SLOT_SQL = """
SELECT s.id, s.item_id
FROM {slot} s
LEFT JOIN (
    SELECT item_id FROM {slot}
    WHERE reviewer_id = %(reviewer)s AND session_id = %(session)s AND item_id >= ({first})
    ORDER BY item_id
) mine ON mine.item_id = s.item_id
LEFT JOIN (
    SELECT item_id FROM {skip}
    WHERE reviewer_id = %(reviewer)s AND item_id >= ({first})
    ORDER BY item_id
) skipped ON skipped.item_id = s.item_id
{hidden_join}
WHERE s.session_id = %(session)s AND {claimable_s}
    AND mine.item_id IS NULL AND skipped.item_id IS NULL {hidden_where}
ORDER BY s.item_id, s.id
LIMIT 1
"""
_FIRST_CLAIMABLE_SQL = (
    "SELECT min(f.item_id) FROM {slot} f WHERE f.session_id = %(session)s AND {claimable_f}"
)
_CLAIMABLE_SQL = (
    "{t}.state IN (%(open)s, %(claimed)s) AND ({t}.state = %(open)s OR {t}.lease_until < %(now)s)"
)
_HIDDEN_JOIN_SQL = "JOIN {item} i ON i.id = s.item_id JOIN {turn} t ON t.id = i.turn_id"


def _next_slot(
    session: ReviewSession, reviewer: AbstractBaseUser, hidden: list[int]
) -> tuple[int, int] | None:
    """(slot id, item id) of the slot Next should claim, or None. Only table names and
    placeholders are put into the SQL; every value is a parameter."""
    slot, skip = ReviewSlot._meta.db_table, ReviewSkip._meta.db_table
    params = {
        "reviewer": reviewer.pk,
        "session": session.pk,
        "open": SlotState.OPEN,
        "claimed": SlotState.CLAIMED,
        "now": timezone.now(),
    }
    hidden_join = hidden_where = ""
    if hidden:
        hidden_join = _HIDDEN_JOIN_SQL.format(
            item=ReviewItem._meta.db_table, turn=RequestLog._meta.db_table
        )
        names = [f"hidden{n}" for n in range(len(hidden))]
        hidden_where = "AND t.deployment_id NOT IN ({})".format(
            ", ".join(f"%({n})s" for n in names)
        )
        params.update(zip(names, hidden, strict=True))
    sql = _NEXT_SLOT_SQL.format(
        slot=slot,
        skip=skip,
        first=_FIRST_CLAIMABLE_SQL.format(slot=slot, claimable_f=_CLAIMABLE_SQL.format(t="f")),
        hidden_join=hidden_join,
        hidden_where=hidden_where,
        claimable_s=_CLAIMABLE_SQL.format(t="s"),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def item_get(*, session: ReviewSession, item_id: int, user: AbstractBaseUser) -> ReviewItem:
    """An item of the session the user may work on (404 otherwise), with its turn."""
    check_can_work(session, user, writing=False)
    try:
        return _item_with_turn(session, visible_items(session, user), item_id)
    except (ReviewItem.DoesNotExist, ValueError):
        raise Http404("No such item in this session.") from None


def _slot_for_label(item: ReviewItem, reviewer: AbstractBaseUser) -> ReviewSlot:
    """The reviewer's slot on the item; one is claimed for them if they have none and the item
    still needs a reviewer (a label given straight from the item's page)."""
    slot = ReviewSlot.objects.select_for_update().filter(item=item, reviewer=reviewer).first()
    if slot is not None:
        return slot
    free = ReviewSlot.objects.filter(claimable(), item=item).order_by("pk").first()
    if free is not None and ReviewSlot.objects.filter(claimable(), pk=free.pk).update(
        state=SlotState.CLAIMED, reviewer=reviewer, lease_until=timezone.now() + lease()
    ):
        return ReviewSlot.objects.get(pk=free.pk)
    raise ValidationError(
        f"This item already has its {item.session.reviewers_per_item} reviewer(s); "
        "press Next for another."
    )


@transaction.atomic
def item_label_save(
    *,
    item: ReviewItem,
    reviewer: AbstractBaseUser,
    text_assessment: dict,
    retrieval_assessments: list | None = None,
) -> Rating:
    """Save the reviewer's label of the item: a new rating version checked against the
    session's label schemas (required ones included), delivered like any rating. A label of
    an item they labelled before replaces it (a newer version). What the reviewer said of the
    turn elsewhere (the chat's rating, another session's schemas, document ratings when no
    `retrieval_assessments` are given) is kept in that version."""
    session = item.session
    check_can_work(session, reviewer, writing=True)
    slot = _slot_for_label(item, reviewer)
    schemas = session_schemas(session)
    rating = feedback_services.rating_change(
        turn=item.turn,
        reviewer=reviewer,
        text_assessment=text_assessment,
        retrieval_assessments=retrieval_assessments,
        schemas=schemas,
        better_answer=any(schema.name == EXPECTED_RESPONSE for schema in schemas),
        require=True,
    )
    first_time = slot.state != SlotState.DONE
    ReviewSlot.objects.filter(pk=slot.pk).update(
        state=SlotState.DONE, rating=rating, lease_until=None, updated_at=timezone.now()
    )
    if first_time:
        ReviewItem.objects.filter(pk=item.pk).update(done_count=F("done_count") + 1)
        # The item's last reviewer: mark it complete in the session's MLflow review queue, if
        # the session is mirrored there (review/mlflow_mirror.py; the task runs after commit).
        if ReviewItem.objects.filter(pk=item.pk, done_count=session.reviewers_per_item).exists():
            mlflow_mirror.item_done_enqueue_on_commit(item)
    ReviewSkip.objects.filter(item=item, reviewer=reviewer).delete()
    return rating


@transaction.atomic
def item_skip(*, item: ReviewItem, reviewer: AbstractBaseUser, reason: str = "") -> None:
    """Give the item back: its slot opens for another reviewer, and it is not offered to this
    one again. An item already labelled cannot be skipped (change the label instead)."""
    check_can_work(item.session, reviewer, writing=True)
    if len(reason) > 500:
        raise ValidationError({"reason": ["At most 500 characters."]})
    slot = ReviewSlot.objects.select_for_update().filter(item=item, reviewer=reviewer).first()
    if slot is not None and slot.state == SlotState.DONE:
        raise ValidationError("You labelled this item; change your label instead of skipping.")
    if slot is not None:
        ReviewSlot.objects.filter(pk=slot.pk).update(
            state=SlotState.OPEN, reviewer=None, lease_until=None, updated_at=timezone.now()
        )
    ReviewSkip.objects.update_or_create(
        item=item, reviewer=reviewer, defaults={"reason": reason.strip()}
    )


@transaction.atomic
def item_settle(*, item: ReviewItem, admin: AbstractBaseUser, text_assessment: dict) -> Rating:
    """An admin's final label of an item reviewers disagree on: saved as the consensus rating
    (source `consensus:<admin>`) and forwarded like any rating."""
    if not roles.is_admin(admin):
        raise PermissionDenied("Only admins may settle a disagreement.")
    session = item.session
    if not session.is_open:
        raise ValidationError("This review session is closed.")
    rating = feedback_services.consensus_rating_create(
        turn=item.turn,
        settled_by=admin,
        text_assessment=text_assessment,
        schemas=session_schemas(session),
    )
    ReviewItem.objects.filter(pk=item.pk).update(
        consensus=rating, settled_by=admin, settled_at=timezone.now()
    )
    return rating
