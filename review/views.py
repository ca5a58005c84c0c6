"""The requests page: the request log as a table with filters held in the URL. Thin: parse the
filters, call review.selectors, render (htmx swaps only the rows)."""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from agents import selectors as agent_selectors
from review import agreement_selectors, selectors
from review.filters import RequestFilterForm
from review.models import ReviewSession, SessionState
from reviewapp import roles


@require_GET
@login_required
def request_list(request: HttpRequest) -> HttpResponse:
    deployments = list(agent_selectors.deployments_visible_to(request.user))
    can_review = roles.can_review(request.user)
    form = RequestFilterForm(request.GET, deployments=deployments, can_review=can_review)
    can_manage = roles.is_admin(request.user)
    context = {
        "form": form,
        "can_review": can_review,
        "can_manage": can_manage,
        "open_sessions": (
            ReviewSession.objects.filter(state=SessionState.OPEN) if can_manage else []
        ),
        "rating_choices": selectors.rating_filter_choices(deployments) if can_review else [],
    }
    if form.is_valid():
        page = selectors.request_search(
            request.user, form.to_filters(), after=form.cleaned_data["after"]
        )
        context.update(
            page=page,
            chips=_chips(request, form),
            next_query=_next_query(request, page),
            filter_query=_query_without(request),
        )
        status = 200
    else:
        context.update(page=None, chips=[], next_query="")
        status = _invalid_status(request)
    template = "review/request_list.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#results"
    return render(request, template, context, status=status)


@require_GET
@login_required
def request_agreement(request: HttpRequest) -> HttpResponse:
    """The Agreement panel's body (htmx loads it when the panel opens): figures per question
    over the turns that match the page's filters. Reviewers and admins only."""
    if not roles.can_review(request.user):
        raise PermissionDenied("Only reviewers and admins may see agreement between reviewers.")
    form = _filter_form(request)
    report = None
    if form.is_valid():
        report = agreement_selectors.agreement_by_question(request.user, form.to_filters())
    disagree_query = _query_without(request, "disagree")
    context = {"form": form, "report": report, "disagree_query": disagree_query}
    status = 200 if report is not None else _invalid_status(request)
    return render(request, "review/request_list.html#agreement", context, status=status)


def _invalid_status(request: HttpRequest) -> int:
    """Filters that cannot be used: a 400, except to htmx, which swaps no 4xx answer (its
    default responseHandling) and would leave the old rows on screen as if filtered."""
    return 200 if request.htmx else 400


def _filter_form(request: HttpRequest) -> RequestFilterForm:
    deployments = list(agent_selectors.deployments_visible_to(request.user))
    return RequestFilterForm(
        request.GET, deployments=deployments, can_review=roles.can_review(request.user)
    )


def _query_without(request: HttpRequest, *names: str, **extra: str) -> str:
    """This view's filters as a query string, never with the page cursor, without `names`
    and with `extra`: for the panel, the chips and the pager."""
    left_out = {"after", *names}
    kept = {k: v for k, v in request.GET.items() if k not in left_out and v}
    return urlencode({**kept, **extra})


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
        query = _query_without(request, name)
        chips.append({"label": field.label, "value": shown, "query": query})
    return chips


def _next_query(request: HttpRequest, page: selectors.RequestPage) -> str:
    if page.next_cursor is None:
        return ""
    return _query_without(request, after=page.next_cursor.encode())
