"""Reads for the requests page: the request log filtered and paged by a keyset (time, id), with
each row's current ratings summed up. Uses the agents and feedback apps through their models'
public fields only; visibility is agents.selectors.requests_visible_to."""

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Substr

from agents import selectors as agent_selectors
from agents.models import RequestLog
from feedback.label_values import label_schemas_for, label_schemas_of_many
from feedback.models import Rating
from review.filters import Cursor, RequestFilters, page_ids_after

PAGE_SIZE = 50
EXCERPT_CHARS = 160  # shown per question and answer; longer ones end with "…"


@dataclass
class RequestPage:
    rows: list[RequestLog]  # each with `rating_summary` (None when not rated)
    next_cursor: Cursor | None


@dataclass
class RatingSummary:
    count: int
    # [(question name, [(value, how many current ratings say it), ...]), ...], as lists so that
    # templates never mistake a value named like a dict method ("items") for the method.
    answers: list[tuple[str, list[tuple[str, int]]]]
    # [(reviewer, their answer), ...] to the question of the `disagree` filter, else empty.
    side_by_side: list[tuple[str, str]] = field(default_factory=list)


def request_search(
    user: AbstractBaseUser,
    filters: RequestFilters,
    *,
    after: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> RequestPage:
    """One page of the turns the user may see that match every filter, newest first. With the
    `disagree` filter, each row's summary also lists who answered that question what."""
    page_ids = page_ids_after(matching_turns(user, filters), after, limit)
    rows = list(
        RequestLog.objects.filter(pk__in=page_ids)
        .select_related("deployment")
        .only(
            "pk",
            "databricks_request_id",
            "created_at",
            "execution_time_ms",
            "status_code",
            "error",
            "incomplete",
            "conversation_id",
            "deployment__display_name",
            "deployment__model_name",
            "deployment__model_version",
        )
        .annotate(
            # One character more than shown, to know whether the text goes on.
            question_excerpt=Substr("request", 1, EXCERPT_CHARS + 1),
            answer_excerpt=Substr("response", 1, EXCERPT_CHARS + 1),
        )
        .order_by("-created_at", "-pk")
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = Cursor(rows[-1].created_at, rows[-1].pk)
    summaries = _rating_summaries(rows, side_by_side=filters.disagree)
    for row in rows:
        row.rating_summary = summaries.get(row.pk)
        # Cut here, not with the template's truncatechars: that filter was a third of the
        # page's rendering time (bench/review.py).
        row.question_excerpt = _excerpt(row.question_excerpt)
        row.answer_excerpt = _excerpt(row.answer_excerpt)
    return RequestPage(rows=rows, next_cursor=next_cursor)


def _excerpt(text: str) -> str:
    if len(text) <= EXCERPT_CHARS:
        return text
    return text[: EXCERPT_CHARS - 1].rstrip() + "…"


def matching_turns(user: AbstractBaseUser, filters: RequestFilters) -> QuerySet[RequestLog]:
    """The turns the user may see that match every filter, unordered (the requests page and the
    agreement figures both start from it)."""
    return _filtered(agent_selectors.requests_visible_to(user), filters)


def _filtered(turns: QuerySet[RequestLog], f: RequestFilters) -> QuerySet[RequestLog]:
    if f.deployment_id is not None:
        turns = turns.filter(deployment_id=f.deployment_id)
    if f.start is not None:
        turns = turns.filter(created_at__gte=f.start)
    if f.end is not None:
        turns = turns.filter(created_at__lt=f.end)
    if f.status == "answered":
        turns = turns.filter(error="", incomplete=False)
    elif f.status == "failed":
        turns = turns.exclude(error="").filter(incomplete=False)
    elif f.status == "incomplete":
        turns = turns.filter(incomplete=True)
    if f.min_ms is not None:
        turns = turns.filter(execution_time_ms__gte=f.min_ms)
    if f.max_ms is not None:
        turns = turns.filter(execution_time_ms__lte=f.max_ms)
    if f.conversation_id:
        turns = turns.filter(conversation_id=f.conversation_id)
    if f.session_id:
        turns = turns.filter(review_items__session_id=f.session_id)
    if f.text:
        turns = turns.filter(Q(request__icontains=f.text) | Q(response__icontains=f.text))
    return _rating_filtered(turns, f)


def _rating_filtered(turns: QuerySet[RequestLog], f: RequestFilters) -> QuerySet[RequestLog]:
    """One EXISTS over current ratings, so reviewer and value apply to the same rating."""
    if f.disagree:
        turns = turns.filter(_reviewers_differ_on(f.disagree))
    if not (f.rated or f.rating or f.reviewer):
        return turns
    ratings = Rating.objects.filter(request=OuterRef("pk"), is_current=True)
    if f.reviewer:
        ratings = ratings.filter(reviewer__username=f.reviewer)
    if f.rating:
        name, value = f.rating
        ratings = ratings.filter(**{f"text_assessment__ratings__{name}__value": value})
    if f.rated == "no":
        return turns.filter(~Exists(ratings))
    return turns.filter(Exists(ratings))


def _reviewers_differ_on(name: str) -> Exists:
    """A current rating answers `name` with a value that another current rating of the same
    turn does not give. Values compare as stored: ratings keep one text per value ("4", not
    "4.0": feedback.label_values.clean_value)."""
    value = KT(f"text_assessment__ratings__{name}__value")
    answered = Rating.objects.filter(is_current=True).annotate(answer=value)
    answered = answered.filter(answer__isnull=False)
    other_answer = answered.filter(request=OuterRef("request")).exclude(answer=OuterRef("answer"))
    return Exists(answered.filter(request=OuterRef("pk")).filter(Exists(other_answer)))


def _rating_summaries(rows: list[RequestLog], side_by_side: str = "") -> dict[int, RatingSummary]:
    """Each row's current ratings: how many, and per question how many said each value; with
    `side_by_side` a question's name, also each reviewer's answer to it."""
    found = Rating.objects.filter(request_id__in=[r.pk for r in rows], is_current=True)
    counts: dict[int, int] = Counter()
    values: dict[int, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    by_reviewer: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for request_id, username, source_id, text in found.order_by("source_id").values_list(
        "request_id", "reviewer__username", "source_id", "text_assessment"
    ):
        counts[request_id] += 1
        for name, rating in (text or {}).get("ratings", {}).items():
            if isinstance(rating, dict) and "value" in rating:
                values[request_id][name][str(rating["value"])] += 1
                if name == side_by_side:
                    who = username or source_id  # the source alone once the user is deleted
                    by_reviewer[request_id].append((who, str(rating["value"])))
    return {
        pk: RatingSummary(
            count=n,
            answers=[(name, sorted(said.items())) for name, said in sorted(values[pk].items())],
            side_by_side=by_reviewer.get(pk, []),
        )
        for pk, n in counts.items()
    }


def rating_filter_choices(deployments) -> list[tuple[str, str]]:
    """question:value pairs a reviewer can pick, from the thumbs and categorical questions of
    these deployments (the default question when one has none)."""
    seen: dict[str, str] = {}
    label_schemas_of_many(deployments)
    for deployment in deployments:
        for question in label_schemas_for(deployment):
            if question.input_type == "thumbs":
                options = ["positive", "negative"]
            elif question.input_type == "categorical":
                options = [str(o) for o in question.options or []]
            else:
                continue
            for option in options:
                seen.setdefault(f"{question.name}:{option}", f"{question.name} is {option}")
    return sorted(seen.items())
