"""The chat page and its fragments. Thin: authorize, call the turn service, render.

Sending is async (agents/turns.py): under ASGI a turn waiting for its agent holds no thread."""

import uuid
from collections.abc import AsyncIterator
from contextlib import suppress

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url, reswap, retarget

from agents import access, conversations, custom_inputs, selectors, turns
from agents.background import collect as background_collect
from agents.models import Deployment, RequestLog
from agents.schemas import ItemAdded, TextDelta
from agents.turns import record
from reviewapp import roles


def _get_chat_deployment(user, pk: int) -> Deployment:
    """The chat's pages show a disabled deployment to admins only (a send says "disabled")."""
    access.follow_changes()
    deployment = access.chat_deployment(user, pk)
    if not deployment.enabled and not roles.is_admin(user):
        raise Http404("No such deployment.")
    return deployment


@require_GET
@login_required
def chat_page(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = _get_chat_deployment(request.user, pk)
    conversation, turns = None, []
    if request.GET.get("c"):
        conversation = selectors.conversation_get_for_user(
            request.user, deployment, request.GET["c"]
        )
        turns = selectors.conversation_turns(conversation)
    inputs = conversation.custom_inputs if conversation else deployment.default_custom_inputs
    context = {
        "deployment": deployment,
        "conversation": conversation,
        "conversations": selectors.conversations_of(request.user, deployment)[:100],
        "turns": turns,
        "custom_inputs": inputs,
        "idempotency_key": uuid.uuid4(),
    }
    return render(request, "agents/chat.html", context)


@require_POST
@login_required
async def chat_send(request: HttpRequest, pk: int) -> HttpResponse:
    """A turn answered in one piece (htmx swaps the rendered turn in)."""
    try:
        started = await _turn_start(request, pk)
        turn = await turns.send_turn(started)
    except (ValidationError, turns.TurnInProgress) as exc:
        messages = exc.messages if isinstance(exc, ValidationError) else [str(exc)]
        response = render(request, "agents/chat.html#composer-error", {"errors": messages})
        return reswap(retarget(response, "#composer-error"), "innerHTML")
    except turns.Overloaded as exc:
        return _busy(exc)
    html = await sync_to_async(_sent_html)(request, started, turn)
    response = HttpResponse(html)
    if started.is_new_conversation:
        response = push_url(response, _conversation_url(started))
    return response


@require_POST
@login_required
async def chat_stream(request: HttpRequest, pk: int) -> HttpResponse:
    """A turn streamed to the browser as server-sent events (static/js/stream.js reads them):
    `delta` {text}, `item` {html}, then `done` {html, url} or `error` {message}. Closing the
    connection (the Stop button) stops the turn; what arrived is kept, marked incomplete."""
    try:
        started = await _turn_start(request, pk)
    except ValidationError as exc:
        html = render_to_string("agents/chat.html#composer-error", {"errors": exc.messages})
        return HttpResponse(html, status=422)
    except turns.Overloaded as exc:
        return _busy(exc)
    response = StreamingHttpResponse(
        _stream_events(request, started), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not hold the stream back
    return response


def _busy(exc: turns.Overloaded) -> HttpResponse:
    """503 with Retry-After; the page shows the fragment under the message box (app.js lets
    htmx swap this 503, stream.js shows it for a streamed send)."""
    html = render_to_string("agents/chat.html#composer-error", {"errors": [str(exc)]})
    response = reswap(retarget(HttpResponse(html, status=503), "#composer-error"), "innerHTML")
    response["Retry-After"] = str(exc.retry_after_s)
    return response


async def _stream_events(request: HttpRequest, started: turns.StartedTurn) -> AsyncIterator[str]:
    try:
        async for event in turns.run_turn(started, stream=True):
            if isinstance(event, TextDelta):
                yield turns.sse("delta", {"text": event.text})
            elif isinstance(event, ItemAdded):
                html = render_to_string("agents/_output_item.html", {"item": event.item})
                yield turns.sse("item", {"html": html})
            else:
                html = await sync_to_async(_sent_html)(request, started, event.turn)
                url = _conversation_url(started) if started.is_new_conversation else ""
                yield turns.sse("done", {"html": html, "url": url})
    except turns.TurnInProgress as exc:
        yield turns.sse("error", {"message": str(exc)})


@require_GET
@login_required
def chat_turn_by_key(request: HttpRequest, pk: int) -> HttpResponse:
    """The turn a key's send saved (after Stop, the browser asks for it); 404 until it is."""
    deployment = _get_chat_deployment(request.user, pk)
    turn = record.keyed_turn(request.user, request.GET.get("key", "")[:64])
    if turn is None or turn.deployment_id != deployment.pk:
        raise Http404("No turn with this key yet.")
    context = {
        "deployment": deployment,
        "turn": turn,
        "conversation": turn.conversation,
        "conversations": selectors.conversations_of(request.user, deployment)[:100],
        "new_conversation": request.GET.get("new") == "1",
    }
    return render(request, "agents/chat.html#sent", context)


@require_GET
@login_required
async def chat_turn_run(request: HttpRequest, pk: int, request_id: str) -> HttpResponse:
    """A turn the agent answers in the background, polled by its page (every 2 s while it
    runs): asks the agent once how the run stands, and shows the answer once it has ended."""
    user = await request.auser()
    # Whoever may see the turn (its chat, or the request page of a reviewer).
    turn = await sync_to_async(selectors.request_get_for_user)(user, request_id, with_trace=False)
    if turn.deployment_id != pk:
        raise Http404("No such turn in this chat.")
    if turn.agent_run_state == "running":
        turn = await background_collect.refresh(turn)
    html = await sync_to_async(render_to_string)(
        "agents/_turn.html", {"turn": turn, "deployment": turn.deployment}, request=request
    )
    return HttpResponse(html)


async def _turn_start(request: HttpRequest, pk: int) -> turns.StartedTurn:
    inputs = custom_inputs.parse_custom_inputs_text(request.POST.get("custom_inputs", ""))
    return await turns.turn_start(
        user=await request.auser(),
        deployment_id=pk,
        message=request.POST.get("message", ""),
        custom_inputs=inputs,
        conversation_id=request.POST.get("conversation_id", ""),
        idempotency_key=request.POST.get("idempotency_key", "").strip()[:64],
    )


def _sent_html(request: HttpRequest, started: turns.StartedTurn, turn: RequestLog) -> str:
    context = {
        "deployment": started.deployment,
        "turn": turn,
        "conversation": started.conversation,
        "conversations": selectors.conversations_of(started.user, started.deployment)[:100],
        "new_conversation": started.is_new_conversation,
    }
    return render_to_string("agents/chat.html#sent", context, request=request)


def _conversation_url(started: turns.StartedTurn) -> str:
    chat_url = reverse("agents:chat", args=[started.deployment.pk])
    return f"{chat_url}?c={started.conversation.pk}"


@require_POST
@login_required
def custom_inputs_check(request: HttpRequest, pk: int) -> HttpResponse:
    """Checked while typing (htmx, debounced): the same rules the send applies."""
    deployment = _get_chat_deployment(request.user, pk)
    try:
        custom_inputs.check_custom_inputs_text(deployment, request.POST.get("custom_inputs", ""))
        errors: list[str] = []
    except ValidationError as exc:
        errors = exc.messages
    return render(request, "agents/chat.html#custom-inputs-status", {"errors": errors})


@require_POST
@login_required
def conversation_rename(request: HttpRequest, pk: int, conversation_id: str) -> HttpResponse:
    deployment = _get_chat_deployment(request.user, pk)
    conversation = selectors.conversation_get_for_user(request.user, deployment, conversation_id)
    with suppress(ValidationError):  # an empty name keeps the old one
        conversations.conversation_rename(
            conversation=conversation, title=request.POST.get("title", "")
        )
    context = {
        "deployment": deployment,
        "conversation": conversation,
        "conversations": selectors.conversations_of(request.user, deployment)[:100],
    }
    return render(request, "agents/chat.html#conversation-list", context)
