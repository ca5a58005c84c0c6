"""Writes for review sessions: create and change a session, add turns to it as items.

An item gets one slot per reviewer the session asks for (review.models); the queue itself
(Next, labels, skips, settling) is review.queue.
"""

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import QueryDict

from agents import selectors as agent_selectors
from agents.models import Deployment, RequestLog
from feedback.models import LabelSchema
from review.filters import RequestFilterForm
from review.models import (
    ReviewItem,
    ReviewSession,
    ReviewSlot,
    SessionLabelSchema,
)
from review.selectors import matching_turns
from reviewapp import roles

# Turns added per statement; "all that match" on a million-row log is read in such chunks.
ADD_CHUNK = 2_000
MAX_ITEMS_PER_SESSION = 1_000_000


def check_can_manage(user: AbstractBaseUser) -> None:
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins may create or change review sessions.")


SESSION_FIELDS = (
    "name",
    "instructions",
    "label_schemas",
    "deployments",
    "assigned_users",
    "assigned_groups",
    "reviewers_per_item",
    "due_at",
    "state",
    "saved_filter",
)


@transaction.atomic
def session_save(
    *, user: AbstractBaseUser, data: dict, session: ReviewSession | None = None
) -> ReviewSession:
    """Create a session, or change `session` with the fields given. `label_schemas` are names
    (in order), `deployments` ids, `assigned_users` usernames, `assigned_groups` group names;
    `saved_filter` is the requests page's query string as a dict, or None. Every problem is
    reported at once and nothing is saved."""
    check_can_manage(user)
    unknown = sorted(set(data) - set(SESSION_FIELDS))
    if unknown:
        raise ValidationError({"non_field_errors": [f"Unknown field(s): {', '.join(unknown)}."]})
    creating = session is None
    session = session or ReviewSession(created_by=user)
    errors: dict[str, list[str]] = {}
    related = _related(data, errors)
    reviewers_before = session.reviewers_per_item
    for field in ("name", "instructions", "reviewers_per_item", "due_at", "state"):
        if field in data:
            setattr(session, field, data[field])
    if "saved_filter" in data:
        session.saved_filter = _clean_saved_filter(data["saved_filter"], user, errors)
    if creating:
        for field in ("label_schemas", "deployments"):
            if not related.get(field) and field not in errors:
                errors[field] = ["Give at least one."]
    if not creating and session.reviewers_per_item != reviewers_before and session.items.exists():
        errors["reviewers_per_item"] = ["The session has items; this cannot change now."]
    try:
        session.full_clean(exclude=["created_by"])
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
    if errors:
        raise ValidationError(errors)
    session.save()
    if "label_schemas" in related:
        SessionLabelSchema.objects.filter(session=session).delete()
        SessionLabelSchema.objects.bulk_create(
            SessionLabelSchema(session=session, schema=s, order=i)
            for i, s in enumerate(related["label_schemas"])
        )
    for field in ("deployments", "assigned_users", "assigned_groups"):
        if field in related:
            getattr(session, field).set(related[field])
    if creating and session.saved_filter is not None:
        session_pull_new(session)
    return session


def _related(data: dict, errors: dict) -> dict:
    """The named related objects, each list checked: every name must exist, none twice."""
    lookups = {
        "label_schemas": (LabelSchema.objects, "name"),
        "deployments": (Deployment.objects, "pk"),
        "assigned_users": (get_user_model().objects, get_user_model().USERNAME_FIELD),
        "assigned_groups": (Group.objects, "name"),
    }
    out = {}
    for field, (manager, key) in lookups.items():
        if field not in data:
            continue
        given = data[field]
        if not isinstance(given, list) or not all(isinstance(v, str | int) for v in given):
            errors[field] = ["Send a list."]
            continue
        found = {getattr(o, key): o for o in manager.filter(**{f"{key}__in": given})}
        missing = [v for v in given if v not in found]
        repeated = sorted({str(v) for v in given if given.count(v) > 1})
        if missing or repeated:
            errors[field] = [f"No such {field[:-1].replace('_', ' ')}: {v}." for v in missing]
            errors[field] += [f"{v} is given more than once." for v in repeated]
            continue
        out[field] = [found[v] for v in given]
    return out


def _clean_saved_filter(value, user, errors: dict) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        errors["saved_filter"] = ["Send the requests page's filters as an object of strings."]
        return None
    form = _filter_form(value, user)
    if not form.is_valid():
        errors["saved_filter"] = [f"{k}: {m}" for k, ms in form.errors.items() for m in ms]
        return None
    return {k: v for k, v in value.items() if v and k != "after"}


def _filter_form(value: dict, user) -> RequestFilterForm:
    query = QueryDict(mutable=True)
    query.update(value)
    deployments = list(agent_selectors.deployments_visible_to(user))
    return RequestFilterForm(query, deployments=deployments, can_review=True)


@transaction.atomic
def items_add(
    *,
    session: ReviewSession,
    user: AbstractBaseUser,
    turns: Iterable[RequestLog] | None = None,
    turn_ids: Iterable[int] | None = None,
) -> int:
    """Add turns as items (once each; turns already in the session are left as they are, failed
    turns are left out). Every turn must be of one of the session's deployments. Returns how
    many were added."""
    check_can_manage(user)
    if not session.is_open:
        raise ValidationError("This session is closed; reopen it to add turns.")
    ids = list(turn_ids) if turn_ids is not None else [t.pk for t in turns or []]
    # One writer per session at a time: two adds of the same turn cannot both insert it.
    ReviewSession.objects.select_for_update().filter(pk=session.pk).exists()
    allowed = set(session.deployments.values_list("pk", flat=True))
    added = 0
    for start in range(0, len(ids), ADD_CHUNK):
        chunk = ids[start : start + ADD_CHUNK]
        rows = dict(RequestLog.objects.filter(pk__in=chunk).values_list("pk", "deployment_id"))
        outside = [pk for pk in chunk if rows.get(pk) not in allowed]
        if outside:
            raise ValidationError(
                f"{len(outside)} of these turns are not of this session's deployments (or do "
                "not exist); nothing was added."
            )
        present = set(
            ReviewItem.objects.filter(session=session, turn_id__in=chunk).values_list(
                "turn_id", flat=True
            )
        )
        # A failed turn has no answer to label: every label would be refused and the item
        # could never be done, so it is left out.
        failed = set(
            RequestLog.objects.filter(pk__in=chunk).exclude(error="").values_list("pk", flat=True)
        )
        new = [pk for pk in dict.fromkeys(chunk) if pk not in present and pk not in failed]
        added += _insert(session, new)
    if session.items.count() > MAX_ITEMS_PER_SESSION:
        raise ValidationError(f"A session holds at most {MAX_ITEMS_PER_SESSION:,} items.")
    return added


def _insert(session: ReviewSession, turn_ids: list[int]) -> int:
    items = ReviewItem.objects.bulk_create(
        ReviewItem(session=session, turn_id=pk) for pk in turn_ids
    )
    ReviewSlot.objects.bulk_create(
        ReviewSlot(item=item, session=session)
        for item in items
        for _ in range(session.reviewers_per_item)
    )
    return len(items)


def items_add_by_request_ids(
    *, session: ReviewSession, user: AbstractBaseUser, request_ids: list[str]
) -> int:
    """Turns named by their request ids (as the API and the Databricks payload call them)."""
    if not isinstance(request_ids, list) or not all(isinstance(r, str) for r in request_ids):
        raise ValidationError({"request_ids": ["Send a list of request ids."]})
    found = dict(
        RequestLog.objects.filter(databricks_request_id__in=request_ids).values_list(
            "databricks_request_id", "pk"
        )
    )
    missing = [r for r in request_ids if r not in found]
    if missing:
        raise ValidationError(
            {"request_ids": [f"No such request: {', '.join(missing[:20])}; nothing was added."]}
        )
    return items_add(session=session, user=user, turn_ids=[found[r] for r in request_ids])


def items_add_matching(*, session: ReviewSession, user: AbstractBaseUser, filters: dict) -> int:
    """Every turn the requests page's filters match (that the user may see), oldest first."""
    form = _filter_form(filters, user)
    if not form.is_valid():
        raise ValidationError(
            {"filters": [f"{k}: {m}" for k, ms in form.errors.items() for m in ms]}
        )
    turns = matching_turns(user, form.to_filters()).filter(deployment__in=session.deployments.all())
    ids = list(turns.order_by("pk").values_list("pk", flat=True)[: MAX_ITEMS_PER_SESSION + 1])
    return items_add(session=session, user=user, turn_ids=ids)


def session_pull_new(session: ReviewSession) -> int:
    """ "Keep adding new matching turns": add the turns that came since the last pull and match
    the saved filter (as the session's creator sees them). Called before Next and on the
    session's page, so reviewers never wait for a schedule."""
    if session.saved_filter is None or not session.is_open or session.created_by is None:
        return 0
    form = _filter_form(session.saved_filter, session.created_by)
    if not form.is_valid():
        return 0
    newest = RequestLog.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    if newest <= session.pulled_until_id:
        return 0
    turns = matching_turns(session.created_by, form.to_filters()).filter(
        pk__gt=session.pulled_until_id, pk__lte=newest, deployment__in=session.deployments.all()
    )
    with transaction.atomic():
        updated = ReviewSession.objects.filter(
            pk=session.pk, pulled_until_id=session.pulled_until_id
        ).update(pulled_until_id=newest)
        if not updated:
            return 0  # another request pulled the same range
        session.pulled_until_id = newest
        room = MAX_ITEMS_PER_SESSION - session.items.count()
        answered = turns.filter(error="").order_by("pk").values_list("pk", flat=True)
        ids = list(answered[: max(room, 0)])
        present = set(
            ReviewItem.objects.filter(session=session, turn_id__in=ids).values_list(
                "turn_id", flat=True
            )
        )
        return _insert(session, [pk for pk in ids if pk not in present])
