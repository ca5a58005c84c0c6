"""A dashboard's numbers, aggregated in SQL per time bucket, and cached per bucket.

Turn figures (turns, latency percentiles of the answered turns, error and incomplete rates,
tokens from the trace's outline) are bucketed by the turn's time; rating figures (per
question, document relevance) by the time of the turn they rate, over current versions, so a
bucket says how good the answers given then were; reviewers' throughput by the rating's time,
over every version. PostgreSQL computes percentiles with `percentile_cont`; SQLite gets the same
numbers (the same interpolation) from the values, read per range.

A closed bucket (its end is past) is cached: turn figures for TURNS_TTL_S (they change only
when old turns are imported or deleted), rating figures for RATINGS_TTL_S (a rating of an old
turn changes its bucket).
"""

import math
from collections import defaultdict
from collections.abc import Callable

from django.core.cache import cache
from django.db import connection
from django.db.models import Aggregate, Avg, Count, FloatField, IntegerField, Q, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Trunc
from django.utils import timezone

from agents.models import RequestLog
from dashboards.ranges import Window
from feedback.models import CHUNK_RELEVANCE, InputType, LabelSchema, Rating

TURNS_TTL_S = 600
RATINGS_TTL_S = 60
PERCENTILES = (50, 95, 99)
NEGATIVE_ROWS = 10


class PercentileCont(Aggregate):
    """PostgreSQL's continuous percentile (linear interpolation between the nearest ranks)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


def percentiles_in_sql() -> bool:
    return connection.vendor == "postgresql"


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """`percentile_cont` of values already sorted, for databases without it."""
    if not sorted_values:
        return None
    position = fraction * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


# -- caching per bucket ----------------------------------------------------------------------


def per_bucket(
    name: str,
    deployment_ids: list[int],
    window: Window,
    compute: Callable[[object, object], dict],
    ttl_s: int,
    empty: Callable[[], dict],
) -> list[tuple[object, dict]]:
    """(bucket start, figures) for every bucket of the window: closed buckets from the cache,
    the others computed in one call of `compute(low, high)` over the range they span."""
    starts = window.bucket_starts()
    now = timezone.now()
    closed = {start for start in starts if start + window.step <= now}
    scope = f"dash:{name}:{window.bucket}:{','.join(map(str, sorted(deployment_ids)))}"

    def key(start) -> str:
        return f"{scope}:{int(start.timestamp())}"

    found = cache.get_many([key(start) for start in starts if start in closed])
    missing = [start for start in starts if key(start) not in found]
    computed: dict = {}
    if missing:
        by_time = compute(missing[0], missing[-1] + window.step)
        computed = {start: by_time.get(int(start.timestamp()), empty()) for start in missing}
        cache.set_many(
            {key(start): figures for start, figures in computed.items() if start in closed},
            ttl_s,
        )
    return [(start, found.get(key(start), computed.get(start))) for start in starts]


def _bucketed(rows: QuerySet, field: str, bucket: str) -> QuerySet:
    return rows.annotate(at=Trunc(field, bucket, tzinfo=timezone.get_current_timezone()))


# -- turns -----------------------------------------------------------------------------------


def empty_turns() -> dict:
    figures = {"turns": 0, "errors": 0, "incomplete": 0}
    figures.update({f"p{p}": None for p in PERCENTILES})
    figures.update(input_tokens=0, output_tokens=0, total_tokens=0)
    return figures


def turn_figures(deployment_ids: list[int], window: Window) -> list[tuple[object, dict]]:
    def compute(low, high) -> dict:
        turns = RequestLog.objects.filter(
            deployment_id__in=deployment_ids, created_at__gte=low, created_at__lt=high
        )
        answered = Q(error="")
        sums = {
            name: Sum(Cast(KT(f"trace_outline__token_usage__{name}"), IntegerField()))
            for name in ("input_tokens", "output_tokens", "total_tokens")
        }
        aggregates = {
            "turns": Count("pk"),
            "errors": Count("pk", filter=~answered),
            "incomplete": Count("pk", filter=Q(incomplete=True)),
            **sums,
        }
        in_sql = percentiles_in_sql()
        if in_sql:
            for p in PERCENTILES:
                aggregates[f"p{p}"] = PercentileCont("execution_time_ms", p / 100, filter=answered)
        rows = _bucketed(turns, "created_at", window.bucket).values("at").annotate(**aggregates)
        out = {int(row.pop("at").timestamp()): _turn_row(row) for row in rows}
        if not in_sql:
            _percentiles_from_values(turns.filter(answered), window.bucket, out)
        return out

    return per_bucket("turns", deployment_ids, window, compute, TURNS_TTL_S, empty_turns)


def _turn_row(row: dict) -> dict:
    figures = empty_turns()
    figures.update({k: v for k, v in row.items() if v is not None})
    return figures


def _percentiles_from_values(answered: QuerySet, bucket: str, out: dict) -> None:
    values: dict[int, list[float]] = defaultdict(list)
    rows = _bucketed(answered, "created_at", bucket).values_list("at", "execution_time_ms")
    for at, took in rows.order_by("at", "execution_time_ms"):
        values[int(at.timestamp())].append(float(took))
    for at, took in values.items():
        figures = out.setdefault(at, empty_turns())
        for p in PERCENTILES:
            figures[f"p{p}"] = percentile(took, p / 100)


# -- ratings ---------------------------------------------------------------------------------


def _current_ratings_of_turns(deployment_ids, low, high) -> QuerySet[Rating]:
    return Rating.objects.filter(
        deployment_id__in=deployment_ids,
        is_current=True,
        request__created_at__gte=low,
        request__created_at__lt=high,
        # Implied (a turn is rated after it was logged), and it lets the index on the
        # rating's (deployment, time) skip the older ratings instead of joining each to its turn.
        created_at__gte=low,
    )


def question_figures(
    deployment_ids: list[int], window: Window, schemas: list[LabelSchema]
) -> list[tuple[object, dict]]:
    """Per bucket, per question: how many answered it and, by its type, the share positive
    (thumbs), the count of each option (categorical), the mean (numeric)."""
    schemas = [s for s in schemas if s.input_type != InputType.TEXT and not s.is_expectation]

    def compute(low, high) -> dict:
        aggregates = {}
        for n, schema in enumerate(schemas):
            value = f"text_assessment__ratings__{schema.name}__value"
            aggregates[f"n{n}"] = Count(
                "pk", filter=Q(text_assessment__ratings__has_key=schema.name)
            )
            if schema.input_type == InputType.THUMBS:
                aggregates[f"v{n}_positive"] = Count("pk", filter=Q(**{value: "positive"}))
            elif schema.input_type == InputType.CATEGORICAL:
                for m, option in enumerate(schema.options or []):
                    aggregates[f"v{n}_{m}"] = Count("pk", filter=Q(**{value: option}))
            elif schema.input_type == InputType.NUMERIC:
                aggregates[f"v{n}_mean"] = Avg(
                    Cast(KT(value), FloatField()),
                    filter=Q(text_assessment__ratings__has_key=schema.name),
                )
        if not aggregates:
            return {}
        ratings = _current_ratings_of_turns(deployment_ids, low, high)
        rows = _bucketed(ratings, "request__created_at", window.bucket).values("at")
        return {int(row.pop("at").timestamp()): row for row in rows.annotate(**aggregates)}

    figures = per_bucket(
        "questions:" + ",".join(s.name for s in schemas),
        deployment_ids, window, compute, RATINGS_TTL_S, dict,
    )  # fmt: skip
    return [(start, _by_question(row, schemas)) for start, row in figures]


def _by_question(row: dict, schemas: list[LabelSchema]) -> dict[str, dict]:
    out = {}
    for n, schema in enumerate(schemas):
        answered = row.get(f"n{n}", 0)
        figures = {"answered": answered}
        if schema.input_type == InputType.THUMBS:
            positive = row.get(f"v{n}_positive", 0)
            figures["positive"] = positive
            figures["share"] = positive / answered if answered else None
        elif schema.input_type == InputType.CATEGORICAL:
            figures["options"] = {
                option: row.get(f"v{n}_{m}", 0) for m, option in enumerate(schema.options or [])
            }
        elif schema.input_type == InputType.NUMERIC:
            figures["mean"] = row.get(f"v{n}_mean")
        out[schema.name] = figures
    return out


def document_figures(deployment_ids: list[int], window: Window) -> list[tuple[object, dict]]:
    """Per bucket: rated documents and the share judged relevant (chunk_relevance positive).
    Read from the current ratings that rate documents (a JSON list, counted here)."""

    def compute(low, high) -> dict:
        ratings = _current_ratings_of_turns(deployment_ids, low, high).exclude(
            retrieval_assessments=[]
        )
        out: dict[int, dict] = {}
        rows = _bucketed(ratings, "request__created_at", window.bucket).values_list(
            "at", "retrieval_assessments"
        )
        for at, documents in rows:
            figures = out.setdefault(int(at.timestamp()), {"rated": 0, "relevant": 0})
            for document in documents:
                given = (document.get("ratings") or {}).get(CHUNK_RELEVANCE)
                if "position" in document and isinstance(given, dict):
                    figures["rated"] += 1
                    figures["relevant"] += given.get("value") == "positive"
        return out

    figures = per_bucket(
        "documents", deployment_ids, window, compute, RATINGS_TTL_S,
        lambda: {"rated": 0, "relevant": 0},
    )  # fmt: skip
    for _, row in figures:
        row["share"] = row["relevant"] / row["rated"] if row["rated"] else None
    return figures


def reviewer_figures(deployment_ids: list[int], window: Window) -> list[tuple[object, dict]]:
    """Per bucket of the rating's time: rating versions made and reviewers who made them."""

    def compute(low, high) -> dict:
        ratings = Rating.objects.filter(
            deployment_id__in=deployment_ids, created_at__gte=low, created_at__lt=high
        )
        rows = _bucketed(ratings, "created_at", window.bucket).values("at")
        rows = rows.annotate(ratings=Count("pk"), reviewers=Count("source_id", distinct=True))
        return {int(row.pop("at").timestamp()): row for row in rows}

    return per_bucket(
        "reviewers", deployment_ids, window, compute, RATINGS_TTL_S,
        lambda: {"ratings": 0, "reviewers": 0},
    )  # fmt: skip


def most_negative(
    deployment_ids: list[int], window: Window, schemas: list[LabelSchema]
) -> list[RequestLog]:
    """The turns of the window with the most current ratings that answer a thumbs question
    "negative", most first (then newest); each with `negatives` and `ratings_count`. A turn
    is in one bucket (its time's), so the window's top is the top of each bucket's top,
    and a closed bucket's top is cached like the other rating figures."""
    thumbs = [s.name for s in schemas if s.input_type == InputType.THUMBS]
    if not thumbs:
        return []
    negative = Q()
    for name in thumbs:
        negative |= Q(**{f"text_assessment__ratings__{name}__value": "negative"})

    def compute(low, high) -> dict:
        ratings = _current_ratings_of_turns(deployment_ids, low, high).filter(negative)
        rows = _bucketed(ratings, "request__created_at", window.bucket).values("at", "request")
        tops: dict[int, list] = defaultdict(list)
        for row in rows.annotate(negatives=Count("pk")):
            tops[int(row["at"].timestamp())].append((row["negatives"], row["request"]))
        return {at: sorted(top, reverse=True)[:NEGATIVE_ROWS] for at, top in tops.items()}

    per_day = per_bucket(
        "negative:" + ",".join(thumbs), deployment_ids, window, compute, RATINGS_TTL_S, list
    )
    top = sorted((pair for _, pairs in per_day for pair in pairs), reverse=True)[:NEGATIVE_ROWS]
    negatives = {turn_id: count for count, turn_id in top}
    totals = dict(
        Rating.objects.filter(request__in=negatives, is_current=True)
        .values("request")
        .annotate(n=Count("pk"))
        .values_list("request", "n")
    )
    turns = RequestLog.objects.filter(pk__in=negatives).select_related("deployment")
    turns = turns.only(
        "pk", "databricks_request_id", "request", "response", "created_at",
        "deployment__display_name", "deployment__model_name", "deployment__model_version",
    )  # fmt: skip
    rows = []
    for turn in turns:
        turn.negatives, turn.ratings_count = negatives[turn.pk], totals.get(turn.pk, 0)
        rows.append(turn)
    return sorted(rows, key=lambda t: (-t.negatives, -t.pk))
