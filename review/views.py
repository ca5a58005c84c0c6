"""The requests page: the request log as a table with filters held in the URL. Thin: parse the
filters, call review.selectors, render (htmx swaps only the rows)."""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from agents import selectors as agent_selectors
from review import selectors
from review.filters import RequestFilterForm
from reviewapp import roles


@require_GET
@login_required
def request_list(request: HttpRequest) -> HttpResponse:
    deployments = list(
        agent_selectors.deployments_visible_to(request.user).prefetch_related("questions")
    )
    can_review = roles.can_review(request.user)
    form = RequestFilterForm(request.GET, deployments=deployments, can_review=can_review)
    context = {
        "form": form,
        "can_review": can_review,
        "rating_choices": selectors.rating_filter_choices(deployments) if can_review else [],
    }
    if form.is_valid():
        page = selectors.request_search(
            request.user, _filters_of(form), after=form.cleaned_data["after"]
        )
        context.update(
            page=page, chips=_chips(request, form), next_query=_next_query(request, page)
        )
        status = 200
    else:
        context.update(page=None, chips=[], next_query="")
        status = 400
    template = "review/request_list.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#results"
    return render(request, template, context, status=status)


def _filters_of(form: RequestFilterForm) -> selectors.RequestFilters:
    data = form.cleaned_data
    start, end = form.time_range()
    return selectors.RequestFilters(
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
        text=data.get("q", "").strip(),
    )


def _chips(request: HttpRequest, form: RequestFilterForm) -> list[dict]:
    """One chip per active filter, each linking to the same view without it."""
    chips = []
    for name, field in form.fields.items():
        value = request.GET.get(name, "").strip()
        if name == "after" or not value:
            continue
        shown = value
        if name == "deployment":
            shown = dict(field.choices).get(form.cleaned_data.get(name), value)
        rest = {k: v for k, v in request.GET.items() if k not in (name, "after") and v}
        chips.append({"label": field.label, "value": shown, "query": urlencode(rest)})
    return chips


def _next_query(request: HttpRequest, page: selectors.RequestPage) -> str:
    if page.next_cursor is None:
        return ""
    rest = {k: v for k, v in request.GET.items() if k != "after" and v}
    return urlencode({**rest, "after": page.next_cursor.encode()})
