"""The reviewer's pages: my sessions, a session (progress, agreement, disagreements), Next, and
focus mode (one item, its label form, skip). Thin: authorize (session_get_for_user answers 404
to anyone not assigned; queue.item_get 404 for an item they may not see), call review.queue,
render. A refused save answers 400 with the form as it was posted, so nothing typed is lost."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from agents import selectors as agent_selectors
from review import focus_selectors, forms, queue, services, session_selectors
from review.models import ReviewItem, ReviewSession
from reviewapp import roles


@require_GET
@login_required
def review_home(request: HttpRequest) -> HttpResponse:
    if not roles.can_review(request.user):
        raise PermissionDenied("Only reviewers and admins work in review sessions.")
    open_rows, closed_rows = focus_selectors.session_rows(request.user)
    context = {"open_rows": open_rows, "closed_rows": closed_rows}
    return render(request, "review/review_home.html", context)


def _session_page(
    request: HttpRequest, session: ReviewSession, *, refused: dict | None = None, status=200
) -> HttpResponse:
    schemas = queue.session_schemas(session)
    context = {
        "session": session,
        "schemas": schemas,
        "progress": session_selectors.session_progress(session, request.user),
        "agreements": session_selectors.session_agreement(session),
        "disagreements": focus_selectors.disagreement_rows(
            session, request.user, schemas, refused=refused
        ),
        "can_work": session.is_open and queue.is_assigned(session, request.user),
    }
    return render(request, "review/session_detail.html", context, status=status)


@require_GET
@login_required
def session_detail(request: HttpRequest, pk: int) -> HttpResponse:
    session = session_selectors.session_get_for_user(request.user, pk)
    services.session_pull_new(session)  # a saved filter's new turns show in the progress
    return _session_page(request, session)


def _next_item(request: HttpRequest, session: ReviewSession) -> HttpResponse:
    """To the reviewer's next item, or back to the session saying why there is none. An htmx
    request (the label form) is sent on with HX-Redirect: the next item is a page of its own."""
    url = reverse("review:session_detail", args=[session.pk])
    try:
        item = queue.item_next(session=session, reviewer=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        item = None
    else:
        if item is None:
            messages.info(request, "Nothing left for you in this session.")
    if item is not None:
        url = reverse("review:item", args=[session.pk, item.pk])
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@require_POST
@login_required
def session_next(request: HttpRequest, pk: int) -> HttpResponse:
    session = session_selectors.session_get_for_user(request.user, pk)
    return _next_item(request, session)


def _item_page(
    request: HttpRequest,
    session: ReviewSession,
    item: ReviewItem,
    *,
    posted=None,
    errors: list[str] | None = None,
    skip_errors: list[str] | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request.user
    schemas = queue.session_schemas(session)
    mine = session_selectors.my_label(item, user)
    if posted is not None:
        fields, comment = forms.fields_from_post(schemas, posted), posted.get("free_text_comment")
    else:
        text = mine.text_assessment if mine else {}
        fields, comment = forms.fields_from_label(schemas, text), text.get("free_text_comment")
    errors = forms.errors_in_words(errors or [], fields)
    context = {
        "session": session,
        "review_item": item,
        "fields": fields,
        "comment": comment or "",
        "errors": errors,
        "skip_errors": skip_errors or [],
        "my_label": mine,
        "my_state": focus_selectors.my_slot_state(item, user),
        "read_only": not session.is_open,
    }
    if request.htmx and posted is not None:  # only the errors: what is typed stays on screen
        return render(request, "review/item_focus.html#label-errors", context, status=status)
    # The turn again without its heavy columns (item_get's copy has them): the page shows
    # whether there is a trace, and loads it only when opened.
    turn = agent_selectors.request_get_for_user(
        user, item.turn.databricks_request_id, with_trace=False
    )
    context.update(
        turn=turn,
        earlier=focus_selectors.conversation_before(turn, user),
        retrieved=focus_selectors.retrieved_documents(turn),
        neighbours=focus_selectors.item_neighbours(session, user, item.pk),
        progress=session_selectors.session_progress(session, user),
        draft_key=f"review-draft:{user.pk}:{session.pk}:{item.pk}",
    )
    return render(request, "review/item_focus.html", context, status=status)


@require_http_methods(["GET", "POST"])
@login_required
def item_focus(request: HttpRequest, pk: int, item_id: int) -> HttpResponse:
    """GET shows the item; POST saves the reviewer's label (a new rating version) and goes on
    to the next item."""
    session = session_selectors.session_get_for_user(request.user, pk)
    item = queue.item_get(session=session, item_id=item_id, user=request.user)
    if request.method == "GET":
        return _item_page(request, session, item)
    text = forms.label_from_post(queue.session_schemas(session), request.POST)
    try:
        queue.item_label_save(item=item, reviewer=request.user, text_assessment=text)
    except ValidationError as exc:
        return _item_page(
            request, session, item, posted=request.POST, errors=exc.messages, status=400
        )
    messages.success(request, f"Saved your label of item {item.pk}.")
    return _next_item(request, session)


@require_POST
@login_required
def item_skip(request: HttpRequest, pk: int, item_id: int) -> HttpResponse:
    session = session_selectors.session_get_for_user(request.user, pk)
    item = queue.item_get(session=session, item_id=item_id, user=request.user)
    try:
        queue.item_skip(item=item, reviewer=request.user, reason=request.POST.get("reason", ""))
    except ValidationError as exc:
        return _item_page(request, session, item, skip_errors=exc.messages, status=400)
    messages.info(request, f"Skipped item {item.pk}; it will not be offered to you again.")
    return _next_item(request, session)


@require_POST
@login_required
def item_settle(request: HttpRequest, pk: int, item_id: int) -> HttpResponse:
    """An admin's final label of an item reviewers disagree on (queue.item_settle refuses
    anyone else with a 403)."""
    session = session_selectors.session_get_for_user(request.user, pk)
    item = queue.item_get(session=session, item_id=item_id, user=request.user)
    text = forms.label_from_post(queue.session_schemas(session), request.POST)
    try:
        queue.item_settle(item=item, admin=request.user, text_assessment=text)
    except ValidationError as exc:
        refused = {item.pk: (request.POST, exc.messages)}
        return _session_page(request, session, refused=refused, status=400)
    messages.success(request, f"Settled item {item.pk}: its final label is saved and forwarded.")
    return redirect(reverse("review:session_detail", args=[session.pk]) + f"#item-{item.pk}")
