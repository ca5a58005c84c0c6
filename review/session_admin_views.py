"""The admin's pages for review sessions: create and change one, and add the requests page's
turns to one. Thin: authorize, call review.services, redirect or render."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from review import services
from review.models import ReviewSession
from review.session_forms import ReviewSessionForm, initial_of
from reviewapp import roles


def _admin_only(request: HttpRequest) -> None:
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins may create or change review sessions.")


def _save(request: HttpRequest, form: ReviewSessionForm, session: ReviewSession | None):
    data = form.session_data()
    if data["saved_filter"] == {} and session is not None and session.saved_filter:
        data["saved_filter"] = session.saved_filter  # kept unless the page sent new filters
    try:
        return services.session_save(user=request.user, data=data, session=session)
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
        return None


@login_required
def session_create(request: HttpRequest) -> HttpResponse:
    """A new session; from the requests page it can keep adding turns that match its filters."""
    _admin_only(request)
    if request.method == "POST":
        form = ReviewSessionForm(request.POST)
        if form.is_valid() and (session := _save(request, form, None)) is not None:
            messages.success(request, f"Review session “{session.name}” created.")
            return redirect(_session_url(session))
    else:
        form = ReviewSessionForm(initial={"saved_filter": request.GET.get("filters", "")})
    status = 400 if request.method == "POST" else 200
    return render(
        request, "review/session_form.html", {"form": form, "session": None}, status=status
    )


@login_required
def session_edit(request: HttpRequest, pk: int) -> HttpResponse:
    _admin_only(request)
    session = get_object_or_404(ReviewSession, pk=pk)
    if request.method == "POST":
        form = ReviewSessionForm(request.POST)
        if form.is_valid() and _save(request, form, session) is not None:
            messages.success(request, f"Review session “{session.name}” saved.")
            return redirect(_session_url(session))
    else:
        form = ReviewSessionForm(initial=initial_of(session))
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "session": session}
    return render(request, "review/session_form.html", context, status=status)


@require_POST
@login_required
def session_add_turns(request: HttpRequest) -> HttpResponse:
    """The requests page's "Add to a review session": the ticked rows, or every turn that
    matches the page's filters."""
    _admin_only(request)
    filters = request.POST.get("filters", "")
    back = reverse("review:request_list") + (f"?{filters}" if filters else "")
    session = ReviewSession.objects.filter(pk=request.POST.get("session") or 0).first()
    if session is None:
        messages.error(request, "Pick a review session to add the turns to.")
        return redirect(back)
    try:
        if request.POST.get("scope") == "all":
            query = {k: v for k, v in QueryDict(filters).items() if k != "after"}
            added = services.items_add_matching(session=session, user=request.user, filters=query)
        else:
            request_ids = request.POST.getlist("turn")
            if not request_ids:
                raise ValidationError("Tick the turns to add, or choose “all that match”.")
            added = services.items_add_by_request_ids(
                session=session, user=request.user, request_ids=request_ids
            )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(back)
    messages.success(
        request,
        f"Added {added} turn{'s' if added != 1 else ''} to “{session.name}” "
        "(turns already in it are not added twice).",
    )
    return redirect(back)


def _session_url(session: ReviewSession) -> str:
    return reverse("review:session_detail", args=[session.pk])
