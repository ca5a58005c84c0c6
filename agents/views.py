"""Pages for deployments. Thin: authorize, call a selector or service, render."""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from agents import selectors, services
from agents.models import Deployment
from feedback import selectors as feedback_selectors
from reviewapp import roles


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _get_deployment_for_admin(request: HttpRequest, pk: int) -> Deployment:
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins manage deployments.")
    return selectors.deployment_get_for_user(request.user, pk)


def _with_rating_counts(deployments: list[Deployment]) -> list[Deployment]:
    """Attach each row's rating count and its deliveries per status (two queries per page)."""
    ids = [d.pk for d in deployments]
    ratings = feedback_selectors.rating_counts(ids)
    deliveries = feedback_selectors.delivery_counts(ids)
    for deployment in deployments:
        deployment.rating_count = ratings.get(deployment.pk, 0)
        deployment.delivery_counts = deliveries.get(deployment.pk, {})
    return deployments


def _render_row(request: HttpRequest, deployment: Deployment) -> HttpResponse:
    row = selectors.deployment_list_with_usage(request.user).get(pk=deployment.pk)
    _with_rating_counts([row])
    return render(request, "agents/deployment_list.html#row", {"deployment": row})


@require_GET
@login_required
def deployment_list(request: HtmxHttpRequest) -> HttpResponse:
    filters = {
        "model_name": request.GET.get("model_name", "").strip(),
        "model_version": request.GET.get("model_version", "").strip(),
        "search": request.GET.get("q", "").strip(),
    }
    deployments = selectors.deployment_list_with_usage(request.user, **filters)
    page = Paginator(deployments, 50).get_page(request.GET.get("page"))
    page.object_list = _with_rating_counts(list(page.object_list))
    context = {
        "page": page,
        "filters": filters,
        "filters_query": urlencode(
            {
                "q": filters["search"],
                "model_name": filters["model_name"],
                "model_version": filters["model_version"],
            }
        ),
        "filtering": any(filters.values()),
        "has_any": selectors.deployments_visible_to(request.user).exists(),
    }
    template = "agents/deployment_list.html"
    if request.htmx and request.htmx.target == "deployment-rows":
        template += "#rows"
    return render(request, template, context)


@require_POST
@login_required
def deployment_toggle_enabled(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = _get_deployment_for_admin(request, pk)
    services.deployment_set_enabled(deployment=deployment, enabled=not deployment.enabled)
    return _render_row(request, deployment)


@require_POST
@login_required
def deployment_check(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = _get_deployment_for_admin(request, pk)
    services.deployment_check_reachability(deployment=deployment)
    return _render_row(request, deployment)
