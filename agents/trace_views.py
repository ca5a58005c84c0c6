"""The request page and the trace tree's fragments: the tree, a span's children, a span's detail.

The tree and its deeper levels are drawn from the turn's stored outline, read once per process
(selectors.trace_outline_or_raise), never from the stored trace, which may be tens of MB; a
span's detail reads that one span from the stored trace. An AgentServer turn's trace is first
read from its tracking server; until that works, the fragments say why (200, so htmx shows it)
and the tree offers to try again.
"""

import functools
from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import format_html
from django.views.decorators.http import require_GET

from agents import selectors, tracking
from agents.models import RequestLog
from agents.trace_outline import OutlineSpan, TraceOutline

CHILDREN_PAGE = 200  # children shown per "show more" step
EAGER_DEPTH = 1  # levels rendered with the tree; deeper ones load when opened


def _outline_for(request: HttpRequest, request_id: str) -> tuple[RequestLog, TraceOutline]:
    # 404 unless allowed; the outline itself comes from the per-process cache in selectors.
    turn = selectors.request_get_for_user(request.user, request_id, with_trace=False)
    outline = selectors.trace_outline_or_raise(request_id)
    if outline is None:
        raise Http404("This answer came back without a trace.")
    return turn, outline


def _unavailable_trace_said(*, retry: bool) -> Callable:
    """Answer a failed tracking-server read with its reason instead of an error page."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                return view(request, *args, **kwargs)
            except tracking.TraceUnavailable as exc:
                message = format_html(
                    '<p class="warn" role="status">{}</p>', tracking.unavailable_message(exc)
                )
                if retry:
                    message += format_html(
                        '<button type="button" hx-get="{}" hx-target="closest .trace-body">'
                        "Try again</button>",
                        request.get_full_path(),
                    )
                return HttpResponse(message)

        return wrapper

    return decorate


def _span_context(
    turn: RequestLog, trace: TraceOutline, spans: list[OutlineSpan], offset: int = 0
) -> dict:
    page = spans[offset : offset + CHILDREN_PAGE]
    return {
        "turn": turn,
        "trace": trace,
        "spans": page,
        "next_offset": offset + CHILDREN_PAGE if len(spans) > offset + CHILDREN_PAGE else None,
        "remaining": max(0, len(spans) - offset - CHILDREN_PAGE),
        "eager_depth": EAGER_DEPTH,
    }


@require_GET
@login_required
def request_detail(request: HttpRequest, request_id: str) -> HttpResponse:
    turn = selectors.request_get_for_user(request.user, request_id, with_trace=False)
    return render(request, "agents/request_detail.html", {"turn": turn})


@require_GET
@login_required
@_unavailable_trace_said(retry=True)
def trace_tree(request: HttpRequest, request_id: str) -> HttpResponse:
    turn, outline = _outline_for(request, request_id)
    return render(request, "agents/_trace.html", _span_context(turn, outline, outline.roots))


@require_GET
@login_required
@_unavailable_trace_said(retry=False)
def span_children(request: HttpRequest, request_id: str, span_id: str) -> HttpResponse:
    turn, outline = _outline_for(request, request_id)
    span = outline.find(span_id)
    if span is None:
        raise Http404("No such span in this trace.")
    try:
        offset = max(0, int(request.GET.get("offset", "0")))
    except ValueError:
        offset = 0
    context = _span_context(turn, outline, span.children, offset)
    return render(request, "agents/_span_nodes.html", context)


@require_GET
@login_required
@_unavailable_trace_said(retry=False)
def span_detail(request: HttpRequest, request_id: str, span_id: str) -> HttpResponse:
    turn = selectors.request_get_for_user(request.user, request_id, with_trace=False)
    span = selectors.trace_span_or_raise(request_id, span_id)
    if span is None:
        raise Http404("No such span in this trace.")
    return render(request, "agents/_span_detail.html", {"turn": turn, "span": span})
