"""The requests page's filters: parsed from the URL (which holds them, so a filtered view can be
shared), checked, and turned into the arguments of review.selectors.request_search."""

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

STATUSES = [
    ("", "Any status"),
    ("answered", "Answered"),
    ("failed", "Failed"),
    ("incomplete", "Incomplete"),
]
EARLIEST_DAY, LATEST_DAY = date(1970, 1, 1), date(9998, 12, 31)
RATED = [("", "Rated or not"), ("yes", "Rated"), ("no", "Not rated")]
_QUESTION_NAME = r"^[a-z][a-z0-9_]{0,63}\Z"
_RATING_VALUE = re.compile(r"^([a-z][a-z0-9_]{0,63}):(.{1,200})\Z", re.DOTALL)


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the last row's time and id (rows are newest first, id breaks ties)."""

    created_at: datetime
    pk: int

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.pk}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            when, pk = raw.split("|")
            created_at = datetime.fromisoformat(when)
            if timezone.is_naive(created_at):
                raise ValueError("naive time")
            return cls(created_at, int(pk))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ValidationError(
                "This page link is damaged; start again from the first page."
            ) from None


def page_ids_after(rows, after: "Cursor | None", limit: int):
    """The ids of the page after the cursor (newest first, `limit` + 1 to know whether more
    follow), as a subquery: the page's columns are then read for those ids only, so filters
    that match thousands of rows sort ids, not thousands of joined rows."""
    if after is not None:
        # The first condition alone lets PostgreSQL start its index scan at the cursor; the
        # second is the keyset's exact edge (id breaks ties of time).
        rows = rows.filter(created_at__lte=after.created_at).filter(
            Q(created_at__lt=after.created_at) | Q(pk__lt=after.pk)
        )
    return rows.order_by("-created_at", "-pk").values("pk")[: limit + 1]


def day_range(since: date | None, until: date | None) -> tuple[datetime | None, datetime | None]:
    """[since 00:00, the day after until 00:00) in the server's time zone; None: open."""
    start = timezone.make_aware(datetime.combine(since, time.min)) if since else None
    end = (
        timezone.make_aware(datetime.combine(until + timedelta(days=1), time.min))
        if until
        else None
    )
    return start, end


def check_days(form: forms.Form, data: dict) -> None:
    """A form's `since` and `until`: days that exist (and the day after), in order."""
    since, until = data.get("since"), data.get("until")
    for name, day in (("since", since), ("until", until)):
        if day and not LATEST_DAY >= day >= EARLIEST_DAY:  # the day after must exist too
            form.add_error(name, f"Pick a day between {EARLIEST_DAY} and {LATEST_DAY}.")
    if since and until and since > until:
        form.add_error("until", "The end date is before the start date.")


class KeysetFilterForm(forms.Form):
    """A listing's filters: its page cursor (`after`) and its days (`since`, `until`)."""

    def clean_after(self) -> Cursor | None:
        text = self.cleaned_data["after"].strip()
        return Cursor.decode(text) if text else None

    def time_range(self) -> tuple[datetime | None, datetime | None]:
        return day_range(self.cleaned_data.get("since"), self.cleaned_data.get("until"))


@dataclass(frozen=True)
class RequestFilters:
    deployment_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    status: str = ""
    rated: str = ""
    rating: tuple[str, str] | None = None
    reviewer: str = ""
    min_ms: int | None = None
    max_ms: int | None = None
    conversation_id: str = ""
    session_id: int | None = None  # a review session's turns
    text: str = ""
    # A question's name: only turns whose current ratings give it two or more different values.
    disagree: str = ""


class RequestFilterForm(KeysetFilterForm):
    """Every filter is optional and they combine (AND). Rating filters apply to one current
    rating: "reviewer bob, answer_correct negative" means bob's current rating says negative."""

    deployment = forms.TypedChoiceField(
        coerce=int, required=False, empty_value=None, label="Deployment"
    )
    since = forms.DateField(required=False, label="From")
    until = forms.DateField(required=False, label="To")
    status = forms.ChoiceField(choices=STATUSES, required=False, label="Status")
    rated = forms.ChoiceField(choices=RATED, required=False, label="Rated")
    rating = forms.CharField(required=False, max_length=270, label="Rating")
    reviewer = forms.CharField(required=False, max_length=150, label="Reviewer")
    min_ms = forms.IntegerField(required=False, min_value=0, label="Latency from (ms)")
    max_ms = forms.IntegerField(required=False, min_value=0, label="to (ms)")
    conversation = forms.UUIDField(required=False, label="Conversation")
    session = forms.IntegerField(required=False, min_value=1, label="Review session")
    q = forms.CharField(required=False, max_length=200, label="Search")
    disagree = forms.RegexField(
        _QUESTION_NAME,
        required=False,
        max_length=64,
        label="Reviewers differ on",
        error_messages={"invalid": "Name a question, for example answer_correct."},
    )
    after = forms.CharField(required=False, max_length=200)

    def __init__(self, data, *, deployments, can_review: bool):
        super().__init__(data)
        self.fields["deployment"].choices = [("", "All deployments")] + [
            (d.pk, str(d)) for d in deployments
        ]
        self.can_review = can_review
        if not can_review:  # only reviewers and admins may see ratings
            for name in ("rated", "rating", "reviewer", "disagree"):
                del self.fields[name]

    def clean_rating(self) -> tuple[str, str] | None:
        text = self.cleaned_data["rating"].strip()
        if not text:
            return None
        match = _RATING_VALUE.match(text)
        if match is None:
            raise ValidationError(
                'Write a rating filter as question:value, for example "answer_correct:negative".'
            )
        return match.group(1), match.group(2)

    def clean(self) -> dict:
        data = super().clean()
        check_days(self, data)
        low, high = data.get("min_ms"), data.get("max_ms")
        if low is not None and high is not None and low > high:
            self.add_error("max_ms", "The highest latency is below the lowest.")
        return data

    def to_filters(self) -> RequestFilters:
        """The valid form's filters, as review.selectors takes them."""
        data = self.cleaned_data
        start, end = self.time_range()
        return RequestFilters(
            deployment_id=data.get("deployment"),
            start=start,
            end=end,
            status=data.get("status", ""),
            rated=data.get("rated", ""),
            rating=data.get("rating"),
            reviewer=data.get("reviewer", "").strip(),
            min_ms=data.get("min_ms"),
            max_ms=data.get("max_ms"),
            conversation_id=str(data["conversation"]) if data.get("conversation") else "",
            session_id=data.get("session"),
            text=data.get("q", "").strip(),
            disagree=data.get("disagree", ""),
        )
