"""The rating bar, document ratings and the deliveries page. Thin: authorize, call, render."""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from agents import selectors as agent_selectors
from agents.models import Deployment
from feedback import selectors, services
from feedback.label_values import label_schemas_for, value_from_form
from feedback.models import CHUNK_RELEVANCE, EXPECTED_RESPONSE, DeliveryStatus
from feedback.rating_context import document_rating_context, rating_bar_context
from reviewapp import roles

DELIVERIES_PER_PAGE = 50


@require_POST
@login_required
def rating_save(request: HttpRequest, request_id: str) -> HttpResponse:
    """The answer's questions, comment and better answer, saved as a new version."""
    turn = services.turn_to_rate(request.user, request_id)
    answers, expectations = {}, {}
    for schema in label_schemas_for(turn.deployment):
        given = value_from_form(request.POST, f"q_{schema.name}", schema)
        (expectations if schema.is_expectation else answers)[schema.name] = given
    expectations.pop(EXPECTED_RESPONSE, None)  # the "better answer" box says it
    comment = request.POST.get("comment", "")
    better = request.POST.get("suggested_output", "")
    text = services.rating_text_from_form(answers, comment, better, expectations)
    try:
        rating = services.rating_change(turn=turn, reviewer=request.user, text_assessment=text)
    except ValidationError as exc:
        context = rating_bar_context(turn, request.user, errors=exc.messages, posted=text)
    else:  # shown as saved, not read again
        context = rating_bar_context(turn, request.user, rating=rating)
    return render(request, "feedback/_rating_bar.html", context)


@require_POST
@login_required
def document_rate(
    request: HttpRequest, request_id: str, span_id: str, position: int
) -> HttpResponse:
    """One retrieved document: relevant or not, and an optional comment."""
    turn = services.turn_to_rate(request.user, request_id)
    span = agent_selectors.trace_span(turn.databricks_request_id, span_id)
    if span is None or span.documents is None:
        raise Http404("No such retriever span in this answer's trace.")
    span_id = span.span_id  # the stored form, whatever form the URL used
    relevance = request.POST.get("relevance", "")
    comment = request.POST.get("comment", "")
    document: dict | None = {"step_id": span_id, "position": position}
    if relevance:
        document["ratings"] = {CHUNK_RELEVANCE: {"value": relevance}}
    if comment.strip():
        document["free_text_comment"] = comment
    if len(document) == 2 or request.POST.get("clear"):
        document = None  # nothing left: the document's rating is taken back
    try:
        rating = services.rating_change(
            turn=turn,
            reviewer=request.user,
            document=document,
            clear_document=None if document else (span_id, position),
        )
    except ValidationError as exc:
        context = document_rating_context(
            turn, request.user, span_id, position, errors=exc.messages
        )
    else:  # shown as saved, not read again
        context = document_rating_context(turn, request.user, span_id, position, rating=rating)
    context["refresh_status"] = True
    return render(request, "feedback/_document_rating.html", context)


@require_GET
@login_required
def rating_status(request: HttpRequest, request_id: str) -> HttpResponse:
    """Polled while the delivery is under way: "saved", then "delivered" (or why not)."""
    turn = services.turn_to_rate(request.user, request_id)
    return render(request, "feedback/_rating_status.html", rating_bar_context(turn, request.user))


def _require_admin(request: HttpRequest) -> None:
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins see deliveries.")


@require_GET
@login_required
def delivery_list(request: HttpRequest) -> HttpResponse:
    _require_admin(request)
    status = request.GET.get("status", "")
    if status not in DeliveryStatus.values:
        status = ""
    try:
        deployment_id = int(request.GET.get("deployment") or 0)
    except ValueError:
        deployment_id = 0
    deliveries = selectors.delivery_list(deployment_id=deployment_id, status=status)
    page = Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filters_query": urlencode({"status": status, "deployment": deployment_id or ""}),
        "status": status,
        "deployment_id": deployment_id,
        "statuses": DeliveryStatus.choices,
        "deployments": Deployment.objects.only("id", "display_name", "model_name", "model_version"),
    }
    return render(request, "feedback/delivery_list.html", context)


@require_POST
@login_required
def delivery_resend(request: HttpRequest, pk: int) -> HttpResponse:
    _require_admin(request)
    # Only a failed delivery is sent again; any other just shows its current state.
    services.delivery_resend(delivery=selectors.delivery_get(pk))
    return render(
        request, "feedback/delivery_list.html#row", {"delivery": selectors.delivery_get(pk)}
    )


@require_GET
@login_required
def delivery_attempts(request: HttpRequest, pk: int) -> HttpResponse:
    _require_admin(request)
    delivery = selectors.delivery_get(pk)
    attempts = delivery.attempt_rows.order_by("started_at", "pk")
    return render(request, "feedback/_delivery_attempts.html", {"attempts": attempts})
