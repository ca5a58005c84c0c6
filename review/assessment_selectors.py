"""Reads for the assessments page and its export: every rating version the user may see
(feedback.selectors.ratings_visible_to) that the filters select, newest first, paged by a
keyset (time, id) as the requests page is."""

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q, QuerySet

from feedback import selectors as feedback_selectors
from feedback.models import Rating
from review.assessment_filters import AssessmentFilters
from review.filters import Cursor, page_ids_after

PAGE_SIZE = 50


@dataclass
class AssessmentPage:
    rows: list[Rating]
    next_cursor: Cursor | None


def matching_ratings(user: AbstractBaseUser, f: AssessmentFilters) -> QuerySet[Rating]:
    ratings = feedback_selectors.ratings_visible_to(user)
    if f.deployment_id:
        ratings = ratings.filter(deployment_id=f.deployment_id)
    if f.question:
        asked = Q(text_assessment__ratings__has_key=f.question) | Q(
            text_assessment__expectations__has_key=f.question
        )
        ratings = ratings.filter(asked)
        if f.value:
            ratings = ratings.filter(
                Q(**{f"text_assessment__ratings__{f.question}__value": f.value})
                | Q(**{f"text_assessment__expectations__{f.question}__value": f.value})
            )
    if f.reviewer:
        ratings = ratings.filter(reviewer__username=f.reviewer)
    if f.session_id:
        ratings = ratings.filter(request__review_items__session_id=f.session_id)
    if f.status:
        ratings = ratings.filter(deliveries__status=f.status)
    if f.start:
        ratings = ratings.filter(created_at__gte=f.start)
    if f.end:
        ratings = ratings.filter(created_at__lt=f.end)
    if f.current_only:
        ratings = ratings.filter(is_current=True)
    return ratings


def assessment_page(
    user: AbstractBaseUser, f: AssessmentFilters, *, after: Cursor | None = None
) -> AssessmentPage:
    page_ids = page_ids_after(matching_ratings(user, f), after, PAGE_SIZE)
    rows = list(
        Rating.objects.filter(pk__in=page_ids)
        .select_related("deployment", "request", "reviewer")
        .prefetch_related("deliveries")
        .only(
            "pk",
            "created_at",
            "source_id",
            "source_type",
            "text_assessment",
            "retrieval_assessments",
            "is_current",
            "deployment__display_name",
            "deployment__model_name",
            "deployment__model_version",
            "request__databricks_request_id",
            "request__request",
            "reviewer__username",
        )
        .order_by("-created_at", "-pk")
    )
    next_cursor = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        next_cursor = Cursor(rows[-1].created_at, rows[-1].pk)
    for rating in rows:
        rating.answers = _answers(rating.text_assessment)
        delivery = next(iter(rating.deliveries.all()), None)
        rating.delivery_status = delivery.get_status_display() if delivery else ""
    return AssessmentPage(rows, next_cursor)


def _answers(text: dict) -> list[tuple[str, str]]:
    """(question, value) of each answer and expectation, a list shown as its items."""
    given = {**text.get("ratings", {}), **text.get("expectations", {})}
    answers = []
    for name, answer in given.items():
        value = answer.get("value") if isinstance(answer, dict) else answer
        answers.append(
            (name, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
        )
    return answers
