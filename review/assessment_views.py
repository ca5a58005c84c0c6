"""The assessments page: every rating version as a table with filters held in the URL, each
linking to its turn; reviewers and admins. Thin: parse, call review.assessment_selectors,
render (htmx swaps only the rows)."""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from agents import selectors as agent_selectors
from review import assessment_selectors
from review.assessment_filters import AssessmentFilterForm
from reviewapp import roles


def assessment_filter_form(request: HttpRequest, user) -> AssessmentFilterForm:
    """The page's filters from the query string (its export reads them the same way)."""
    if not roles.can_review(user):
        raise PermissionDenied("Only reviewers and admins see ratings.")
    deployments = list(agent_selectors.deployments_visible_to(user))
    return AssessmentFilterForm(request.GET, deployments=deployments)


@require_GET
@login_required
def assessment_list(request: HttpRequest) -> HttpResponse:
    form = assessment_filter_form(request, request.user)
    filter_query = urlencode({k: v for k, v in request.GET.items() if k != "after" and v})
    context = {"form": form, "filter_query": filter_query, "page": None, "next_query": ""}
    status = 200
    if form.is_valid():
        page = assessment_selectors.assessment_page(
            request.user, form.to_filters(), after=form.cleaned_data["after"]
        )
        context["page"] = page
        if page.next_cursor is not None:
            after = {"after": page.next_cursor.encode()}
            context["next_query"] = urlencode({**dict(request.GET.items()), **after})
    else:
        status = 200 if request.htmx else 400
    template = "review/assessment_list.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#results"
    return render(request, template, context, status=status)
