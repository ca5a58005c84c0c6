"""A dashboard's time range and bucket, from the URL: the last 24 hours, 7 or 30 days, or
whole days from one to another; hours or days. Ranges are aligned to whole buckets, so the
closed buckets of one view are the same as the next one's (and cached)."""

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django import forms
from django.utils import timezone

from review.filters import check_days, day_range

RANGES = [
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("custom", "From … to …"),
]
RANGE_DAYS = {"24h": 1, "7d": 7, "30d": 30}
BUCKETS = [("hour", "Hours"), ("day", "Days")]
BUCKET_SIZE = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
MAX_BUCKETS = 24 * 92  # hours of a quarter; more would be unreadable, and slow


@dataclass(frozen=True)
class Window:
    start: datetime  # the first bucket's start (inclusive)
    end: datetime  # the last bucket's end (exclusive)
    bucket: str

    @property
    def step(self) -> timedelta:
        return BUCKET_SIZE[self.bucket]

    def bucket_starts(self) -> list[datetime]:
        starts, at = [], self.start
        while at < self.end:
            starts.append(at)
            at = _next(at, self.bucket)
        return starts


class RangeForm(forms.Form):
    range = forms.ChoiceField(choices=RANGES, required=False)
    since = forms.DateField(required=False, label="From")
    until = forms.DateField(required=False, label="To")
    bucket = forms.ChoiceField(choices=BUCKETS, required=False)
    compare = forms.TypedChoiceField(
        coerce=int, required=False, empty_value=None, label="Compare with"
    )

    def __init__(self, data, *, compare_with=()):
        super().__init__(data)
        self.fields["compare"].choices = [("", "Nothing")] + [(d.pk, str(d)) for d in compare_with]

    def clean(self) -> dict:
        data = super().clean()
        chosen = data.get("range") or "7d"
        data["range"] = chosen
        since, until = data.get("since"), data.get("until")
        if chosen == "custom":
            if not since or not until:
                self.add_error("since", "Give both days of the range.")
            check_days(self, data)
        data["bucket"] = data.get("bucket") or ("hour" if chosen == "24h" else "day")
        if not self.errors:
            window = self._window(data)
            if len(window.bucket_starts()) > MAX_BUCKETS:
                self.add_error("bucket", "Too many buckets: pick days, or a shorter range.")
            data["window"] = window
        return data

    def _window(self, data) -> Window:
        bucket, now = data["bucket"], timezone.localtime()
        if data["range"] == "custom":
            start, end = day_range(data["since"], data["until"])
        else:
            end = _next(_floor(now, bucket), bucket)  # the bucket now in, whole
            start = _floor(now - timedelta(days=RANGE_DAYS[data["range"]]), bucket)
            start = _next(start, bucket) if bucket == "day" else start
        return Window(_floor(start, bucket), end, bucket)


def _floor(moment: datetime, bucket: str) -> datetime:
    moment = timezone.localtime(moment)
    if bucket == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return timezone.make_aware(datetime.combine(moment.date(), time.min))


def _next(moment: datetime, bucket: str) -> datetime:
    if bucket == "hour":
        return moment + timedelta(hours=1)
    # A day in the server's time zone: across a clock change it is 23 or 25 hours.
    return timezone.make_aware(datetime.combine(moment.date() + timedelta(days=1), time.min))
