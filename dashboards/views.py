"""Dashboards: one deployment's (optionally beside another version) and one across every
deployment the user may see. Thin: check the range, pick the deployments, render the charts
dashboards.figures makes."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from agents import selectors as agent_selectors
from dashboards.figures import Group, dashboard
from dashboards.ranges import RangeForm
from feedback.label_values import label_schemas_for, label_schemas_of_many
from reviewapp import roles


@require_GET
@login_required
def deployment_dashboard(request: HttpRequest, pk: int) -> HttpResponse:
    user = request.user
    deployment = agent_selectors.deployment_get_for_user(user, pk, include_disabled=True)
    visible = agent_selectors.deployments_visible_to(user, include_disabled=True)
    # Other versions of the same model first: comparing them is the usual question.
    others = sorted(
        (d for d in visible if d.pk != deployment.pk),
        key=lambda d: (d.model_name != deployment.model_name, str(d)),
    )
    form = RangeForm(request.GET, compare_with=others)
    context = {"form": form, "deployment": deployment, "board": None}
    if not form.is_valid():
        return render(request, "dashboards/dashboard.html", context, status=400)
    groups = [Group(str(deployment), [deployment.pk], label_schemas_for(deployment))]
    compare = next((d for d in others if d.pk == form.cleaned_data["compare"]), None)
    if compare is not None:
        groups.append(Group(str(compare), [compare.pk], label_schemas_for(compare)))
    context["board"] = dashboard(
        groups, form.cleaned_data["window"], with_turns_table=roles.can_review(user)
    )
    context["window"] = form.cleaned_data["window"]
    return render(request, "dashboards/dashboard.html", context)


@require_GET
@login_required
def overall_dashboard(request: HttpRequest) -> HttpResponse:
    user = request.user
    deployments = list(agent_selectors.deployments_visible_to(user, include_disabled=True))
    form = RangeForm(request.GET)
    context = {"form": form, "deployment": None, "board": None, "deployments": deployments}
    if not form.is_valid():
        return render(request, "dashboards/dashboard.html", context, status=400)
    if deployments:
        label_schemas_of_many(deployments)
        schemas = {}
        for deployment in deployments:  # each question once, by name
            for schema in label_schemas_for(deployment):
                schemas.setdefault(schema.name, schema)
        group = Group("All deployments", [d.pk for d in deployments], list(schemas.values()))
        context["board"] = dashboard(
            [group], form.cleaned_data["window"], with_turns_table=roles.can_review(user)
        )
    context["window"] = form.cleaned_data["window"]
    return render(request, "dashboards/dashboard.html", context)
