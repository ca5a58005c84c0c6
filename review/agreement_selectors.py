"""Agreement figures per question over the current ratings of the turns that match the requests
page's filters. Later a review session will hand review.agreement its own items instead."""

import json
import math
from collections import defaultdict
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Count, Max

from agents.models import Deployment
from feedback.label_values import label_schemas_for, label_schemas_of_many
from feedback.models import InputType, Rating
from feedback.services import SOURCE_CONSENSUS_PREFIX
from review.agreement import Agreement, Level, agreement
from review.filters import RequestFilters
from review.selectors import matching_turns

# The newest turns that match, at most: enough for a stable figure, and a bounded cost (the
# figures over 10,000 turns × 3 reviewers take well under a second, bench/review_agreement.py).
TURN_CAP = 10_000
LEVEL_OF_INPUT: dict[str, Level] = {
    InputType.THUMBS: "nominal",
    InputType.CATEGORICAL: "nominal",
    # A set of options counts as one category: two reviewers agree when they picked the same set.
    InputType.CATEGORICAL_LIST: "nominal",
    InputType.NUMERIC: "interval",
}


@dataclass(frozen=True)
class QuestionAgreement:
    question: str
    level: Level
    agreement: Agreement


@dataclass(frozen=True)
class AgreementReport:
    turns: int  # turns considered: the newest matching ones with 2+ current ratings, up to `cap`
    cap: int
    capped: bool  # more turns matched than were considered
    questions: list[QuestionAgreement]


def agreement_by_question(
    user: AbstractBaseUser, filters: RequestFilters, *, cap: int = TURN_CAP
) -> AgreementReport:
    """For each thumbs, categorical or numeric question, agreement between the current ratings
    of the newest `cap` turns that match, one label per reviewer and turn.
    A question asked as a number by one deployment and as a category by another is left out:
    its answers cannot be compared at one level."""
    # Only turns with two or more current ratings can agree or differ: on a log mostly unrated,
    # the newest matching turns would hold none. Found from the ratings' side (far fewer rows
    # than turns), newest turn first, as a subquery: their ids never travel to Python and back
    # as a 10,000-item parameter list (bench/review.py).
    # An admin's settled value (a consensus rating) is not one more reviewer.
    reviewed = Rating.objects.exclude(source_id__startswith=SOURCE_CONSENSUS_PREFIX)
    newest = (
        reviewed.filter(is_current=True, request__in=matching_turns(user, filters))
        .values("request_id")
        .annotate(answers=Count("pk"), at=Max("request__created_at"))
        .filter(answers__gte=2)
        .order_by("-at", "-request_id")
        .values("request_id")
    )
    matched = newest[: cap + 1].count()
    capped = matched > cap
    ratings = reviewed.filter(request_id__in=newest[:cap], is_current=True).values_list(
        "request_id", "deployment_id", "reviewer_id", "source_id", "text_assessment"
    )
    labels: dict[str, dict[int, dict[object, object]]] = defaultdict(lambda: defaultdict(dict))
    deployment_ids = set()
    for turn_id, deployment_id, reviewer_id, source_id, text in ratings:
        # One current rating per (turn, reviewer); a deleted user's ratings keep their source.
        reviewer = reviewer_id if reviewer_id is not None else f"source:{source_id}"
        deployment_ids.add(deployment_id)
        for name, rating in ((text or {}).get("ratings") or {}).items():
            if isinstance(rating, dict) and rating.get("value") is not None:
                labels[name][turn_id][reviewer] = rating["value"]
    levels = _levels(deployment_ids)
    questions = []
    for name in sorted(labels):
        level = levels.get(name)
        if level is None:
            continue
        by_turn = {turn: comparable(by, level) for turn, by in labels[name].items()}
        questions.append(QuestionAgreement(name, level, agreement(by_turn, level)))
    return AgreementReport(turns=min(matched, cap), cap=cap, capped=capped, questions=questions)


def _levels(deployment_ids: set[int]) -> dict[str, Level]:
    """Each question name's level over these deployments; None when they do not agree on it."""
    found: dict[str, set] = defaultdict(set)
    deployments = list(Deployment.objects.filter(pk__in=deployment_ids))
    label_schemas_of_many(deployments)
    for deployment in deployments:
        for schema in label_schemas_for(deployment):
            if not schema.is_expectation:
                found[schema.name].add(LEVEL_OF_INPUT.get(schema.input_type))
    return {name: levels.pop() for name, levels in found.items() if len(levels) == 1}


def comparable(by_reviewer: dict[object, object], level: Level) -> dict[object, object]:
    """Numbers for the interval level (ratings carry them as text, "4" or "3.5"; an answer that
    is no number was saved before the question became numeric and is left out); text for
    categories."""
    if level == "nominal":
        return {
            reviewer: json.dumps(value) if isinstance(value, list) else str(value)
            for reviewer, value in by_reviewer.items()
        }
    numbers = {}
    for reviewer, value in by_reviewer.items():
        if isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            numbers[reviewer] = number
    return numbers
