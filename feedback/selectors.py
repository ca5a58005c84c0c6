"""Reads for ratings and deliveries: the current rating, lists for the pages and the API."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Prefetch, QuerySet
from django.http import Http404

from agents import selectors as agent_selectors
from agents.models import RequestLog
from feedback.models import (
    EXPECTED_RESPONSE,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    LabelSchema,
    Rating,
)
from reviewapp import roles

# A turn's columns that can be megabytes; no ratings list or page shows them.
HEAVY_TURN_COLUMNS = ("request__trace", "request__request_raw", "request__response_raw")


def rating_current(turn: RequestLog, user: AbstractBaseUser) -> Rating | None:
    if not user.is_authenticated:
        return None
    return (
        Rating.objects.filter(request=turn, reviewer=user, is_current=True)
        .prefetch_related("deliveries")
        .first()
    )


def ratings_current_in_conversation(conversation_id, user: AbstractBaseUser) -> dict[int, Rating]:
    """The user's current ratings of every turn of a conversation, by turn pk (one query pair
    for a chat page, instead of two per answer)."""
    ratings = Rating.objects.filter(
        request__conversation_id=conversation_id, reviewer=user, is_current=True
    ).prefetch_related("deliveries")
    return {rating.request_id: rating for rating in ratings}


def delivery_of(rating: Rating | None) -> Delivery | None:
    """The rating's delivery: the one a service just made (`saved_deliveries`), else from a
    prefetch_related("deliveries") or a query."""
    if rating is None:
        return None
    deliveries = getattr(rating, "saved_deliveries", None)
    if deliveries is None:
        deliveries = list(rating.deliveries.all())
    return deliveries[0] if deliveries else None


def ratings_visible_to(user: AbstractBaseUser) -> QuerySet[Rating]:
    """Reviewers and admins see the ratings of every turn they may see; others none."""
    if not roles.can_review(user):
        return Rating.objects.none()
    turns = agent_selectors.requests_visible_to(user)
    return Rating.objects.filter(request__in=turns.values("pk"))


def rating_get_for_user(user: AbstractBaseUser, pk: int) -> Rating:
    attempts = DeliveryAttempt.objects.order_by("started_at", "pk")
    deliveries = Delivery.objects.prefetch_related(Prefetch("attempt_rows", queryset=attempts))
    try:
        return (
            ratings_visible_to(user)
            .select_related("request", "deployment")
            .defer(*HEAVY_TURN_COLUMNS)
            .prefetch_related(Prefetch("deliveries", queryset=deliveries))
            .get(pk=pk)
        )
    except Rating.DoesNotExist:
        raise Http404("No such rating.") from None


def rating_list(
    user: AbstractBaseUser, *, deployment_id: int | None = None, status: str = ""
) -> QuerySet[Rating]:
    ratings = (
        ratings_visible_to(user)
        .select_related("request")
        .defer(*HEAVY_TURN_COLUMNS)
        .prefetch_related("deliveries")
    )
    if deployment_id:
        ratings = ratings.filter(deployment_id=deployment_id)
    if status:
        ratings = ratings.filter(deliveries__status=status)
    return ratings.order_by("-created_at", "-pk")


def delivery_list(*, deployment_id: int | None = None, status: str = "") -> QuerySet[Delivery]:
    """The deliveries page's rows, newest first, with only what it shows."""
    deliveries = Delivery.objects.select_related(
        "deployment", "rating__request", "rating__reviewer"
    ).only(
        "id",
        "deployment",
        "rating",
        "rating__request",
        "rating__reviewer",
        "status",
        "sink",
        "attempts",
        "next_attempt_at",
        "last_error",
        "sent_at",
        "created_at",
        "deployment__id",
        "deployment__display_name",
        "deployment__model_name",
        "deployment__model_version",
        "rating__id",
        "rating__created_at",
        "rating__source_id",
        "rating__reviewer__id",
        "rating__reviewer__username",
        "rating__request__id",
        "rating__request__databricks_request_id",
    )
    if deployment_id:
        deliveries = deliveries.filter(deployment_id=deployment_id)
    if status:
        deliveries = deliveries.filter(status=status)
    return deliveries.order_by("-created_at", "-pk")


def delivery_get(pk: int) -> Delivery:
    try:
        return delivery_list().get(pk=pk)
    except Delivery.DoesNotExist:
        raise Http404("No such delivery.") from None


def delivery_counts(deployment_ids: list[int] | None = None) -> dict[int, dict[str, int]]:
    """{deployment id: {status: count}} for the deployments page (every status present)."""
    rows = Delivery.objects.all()
    if deployment_ids is not None:
        rows = rows.filter(deployment_id__in=deployment_ids)
    counts: dict[int, dict[str, int]] = {}
    for deployment_id, status, n in (
        rows.values_list("deployment_id", "status").annotate(n=Count("pk")).order_by()
    ):
        counts.setdefault(deployment_id, dict.fromkeys(DeliveryStatus.values, 0))[status] = n
    return counts


def rating_counts(deployment_ids: list[int]) -> dict[int, int]:
    rows = (
        Rating.objects.filter(deployment_id__in=deployment_ids, is_current=True)
        .values_list("deployment_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return dict(rows)


def label_schema_has_labels(schema: LabelSchema) -> bool:
    """Whether any rating, current or not, answers the schema."""
    if schema.name == EXPECTED_RESPONSE:
        return Rating.objects.filter(text_assessment__has_key="suggested_output").exists()
    lookup = {f"text_assessment__{schema.text_field}__has_key": schema.name}
    return Rating.objects.filter(**lookup).exists()


def label_schema_in_use(schema: LabelSchema) -> bool:
    """Labelled, or in a deployment's default set or a review session's."""
    if label_schema_has_labels(schema) or schema.deployment_links.exists():
        return True
    sessions = getattr(schema, "review_sessions", None)  # the review app's, when installed
    return bool(sessions is not None and sessions.exists())


def label_schemas_by_name() -> dict[str, LabelSchema]:
    return {schema.name: schema for schema in LabelSchema.objects.all()}
