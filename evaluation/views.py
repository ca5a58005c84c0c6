"""Runs in the browser: the list, a run's page (live progress while it runs, metrics, rows with
their scores and a link to each answer's trace), two runs compared, and "Review this run".
Thin: parse, call evaluation's services and selectors, render."""

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from evaluation import datasets, run_selectors, runs, session_datasets
from evaluation import run_review as reviews
from evaluation.models import Dataset, Run, RunKind, RunStatus
from feedback.models import LabelSchema
from review.models import ReviewSession
from reviewapp import roles


@require_GET
@login_required
def run_list(request: HttpRequest) -> HttpResponse:
    context = {"runs": run_selectors.run_list(request.user)}
    return render(request, "evaluation/run_list.html", context)


def _progress_context(run: Run) -> dict:
    counts = run_selectors.run_counts(run)
    return {"run": run, "counts": counts, "running": run.status == RunStatus.RUNNING}


@require_GET
@login_required
def run_detail(request: HttpRequest, name: str) -> HttpResponse:
    run = run_selectors.run_get(request.user, name)
    after = request.GET.get("after", "")
    rows = run_selectors.run_rows(run, after=_position(after))
    evaluators = [spec["name"] for spec in run.evaluators]
    context = {
        **_progress_context(run),
        "metrics": run_selectors.run_metrics(run),
        "rows": [(row, [(name, row.scores.get(name, {})) for name in evaluators]) for row in rows],
        "evaluators": evaluators,
        "next_after": rows[-1].position if len(rows) == run_selectors.ROWS_PAGE else None,
        "others": [
            r for r in run_selectors.run_list(request.user) if r.pk != run.pk and r.kind == run.kind
        ],
        "label_schemas": LabelSchema.objects.order_by("name"),
        "can_review": roles.is_admin(request.user),
        "is_evaluation": run.kind == RunKind.EVALUATION,
    }
    return render(request, "evaluation/run_detail.html", context)


@require_GET
@login_required
def run_progress(request: HttpRequest, name: str) -> HttpResponse:
    """The progress card alone, which the page polls while the run works."""
    run = run_selectors.run_get(request.user, name)
    response = render(request, "evaluation/run_detail.html#progress", _progress_context(run))
    if request.htmx and run.status != RunStatus.RUNNING:
        response["HX-Refresh"] = "true"  # it ended: reload the page once, rows and metrics too
    return response


@require_POST
@login_required
def run_cancel(request: HttpRequest, name: str) -> HttpResponse:
    run = run_selectors.run_get(request.user, name)
    if runs.run_cancel(run):
        messages.success(request, f"Run {run.name} cancelled: the rows in flight finish.")
    return redirect("evaluation:run_detail", name=run.name)


@require_POST
@login_required
def run_resume(request: HttpRequest, name: str) -> HttpResponse:
    run = run_selectors.run_get(request.user, name)
    try:
        left = runs.run_resume(run)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("evaluation:run_detail", name=run.name)
    messages.info(request, f"{left} row(s) of {run.name} to send." if left else
                  "Every row is answered: nothing to resume.")  # fmt: skip
    return redirect("evaluation:run_detail", name=run.name)


@require_POST
@login_required
def run_review(request: HttpRequest, name: str) -> HttpResponse:
    run = run_selectors.run_get(request.user, name)
    try:
        session = reviews.run_review_session(
            user=request.user,
            run=run,
            name=request.POST.get("name", "").strip(),
            label_schemas=request.POST.getlist("label_schemas"),
            rows=request.POST.get("rows", reviews.ALL_ROWS),
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("evaluation:run_detail", name=run.name)
    messages.success(request, f"Review session {session.name!r} made from run {run.name}.")
    return redirect(reverse("review:session_detail", args=[session.pk]))


@require_GET
@login_required
def run_compare(request: HttpRequest, name: str) -> HttpResponse:
    base = run_selectors.run_get(request.user, name)
    other = run_selectors.run_get(request.user, request.GET.get("other", ""))
    compared = run_selectors.run_compare(base, other)
    for changed in compared["changed_rows"]:
        changed["sides"] = [changed["base"], changed["other"]]
    context = {"base": base, "other": other, "compared": compared}
    return render(request, "evaluation/run_compare.html", context)


@require_POST
@login_required
def session_dataset_version(request: HttpRequest, pk: int) -> HttpResponse:
    """A review session's expectations saved as a dataset version (the session page's form)."""
    session = get_object_or_404(ReviewSession, pk=pk)
    try:
        made = session_datasets.session_dataset_version(
            session=session, user=request.user, name=request.POST.get("name", "").strip()
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        version = made.version
        messages.success(request, f"Saved {version.row_count} row(s) as dataset {version}.")
    return redirect("review:session_detail", pk=session.pk)


DATASET_ROWS_PAGE = 100


@login_required
def dataset_list(request: HttpRequest) -> HttpResponse:
    """The datasets and their versions, and an upload form (reviewers and admins)."""
    if not roles.can_review(request.user):
        raise PermissionDenied("Only reviewers and admins see datasets.")
    context: dict = {"posted_name": "", "problems": [], "rejected": ""}
    status = 200
    if request.method == "POST":
        upload, name = request.FILES.get("file"), request.POST.get("name", "").strip()
        context["posted_name"] = name
        try:
            if upload is None:
                raise ValidationError("Choose a file to upload.")
            made = datasets.dataset_upload(
                name=name, file=upload, file_name=upload.name, user=request.user,
                skip_bad_rows=bool(request.POST.get("skip_bad_rows")),
            )  # fmt: skip
        except datasets.DatasetRejected as exc:
            context.update(problems=exc.problems, rejected=exc.messages[0])
            status = 400
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            status = 400
        else:
            skipped = f"; {len(made.skipped)} bad row(s) skipped" if made.skipped else ""
            messages.success(request, f"Saved {made.version} ({made.version.row_count} rows"
                                      f"{skipped}).")  # fmt: skip
            return redirect("evaluation:dataset_list")
    context["datasets"] = Dataset.objects.prefetch_related("versions")
    return render(request, "evaluation/dataset_list.html", context, status=status)


@require_GET
@login_required
def dataset_version(request: HttpRequest, name: str, number: int) -> HttpResponse:
    if not roles.can_review(request.user):
        raise PermissionDenied("Only reviewers and admins see datasets.")
    version = datasets.dataset_version(name, number)
    after = request.GET.get("after", "")
    rows = list(
        version.rows.filter(position__gt=_position(after)).order_by("position")[:DATASET_ROWS_PAGE]
    )
    context = {
        "version": version,
        "rows": [(row.position, [(c, row.data.get(c)) for c in version.columns]) for row in rows],
        "next_after": rows[-1].position if len(rows) == DATASET_ROWS_PAGE else None,
    }
    return render(request, "evaluation/dataset_version.html", context)


def _position(text: str) -> int:
    """A page's `?after=` position; anything but a plain whole number is the first page."""
    return int(text) if re.fullmatch(r"[0-9]{1,9}", text) else 0
