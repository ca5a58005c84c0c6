"""The chat page and its fragments. Thin: authorize, call the turn service, render.

Sending is async (agents/turns.py): under ASGI a turn waiting for its agent holds no thread."""

import uuid
from collections.abc import AsyncIterator
from contextlib import suppress

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url, reswap, retarget

from agents import chat, custom_inputs, selectors, turn_log, turns
from agents.models import Deployment, RequestLog
from agents.schemas import ItemAdded, TextDelta
from reviewapp import roles


def _get_chat_deployment(user, pk: int) -> Deployment:
    if not roles.can_chat(user):
        raise PermissionDenied("Your account has no role that may chat.")
    return selectors.deployment_get_for_user(user, pk)


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
    user = await request.auser()
    try:
        turn_input, is_new = await sync_to_async(_turn_input)(request, user, pk)
        done = await turns.send_turn(turn_input)
    except (ValidationError, turns.TurnInProgress) as exc:
        messages = exc.messages if isinstance(exc, ValidationError) else [str(exc)]
        response = render(request, "agents/chat.html#composer-error", {"errors": messages})
        return reswap(retarget(response, "#composer-error"), "innerHTML")
    html = await sync_to_async(_sent_html)(request, turn_input, done.turn, is_new)
    response = HttpResponse(html)
    if is_new:
        response = push_url(response, _conversation_url(turn_input))
    return response


@require_POST
@login_required
async def chat_stream(request: HttpRequest, pk: int) -> HttpResponse:
    """A turn streamed to the browser as server-sent events (static/js/stream.js reads them):
    `delta` {text}, `item` {html}, then `done` {html, url} or `error` {message}. Closing the
    connection (the Stop button) stops the turn; what arrived is kept, marked incomplete."""
    user = await request.auser()
    try:
        turn_input, is_new = await sync_to_async(_turn_input)(request, user, pk)
    except ValidationError as exc:
        html = render_to_string("agents/chat.html#composer-error", {"errors": exc.messages})
        return HttpResponse(html, status=422)
    response = StreamingHttpResponse(
        _stream_events(request, turn_input, is_new), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not hold the stream back
    return response


async def _stream_events(
    request: HttpRequest, turn_input: turns.TurnInput, is_new: bool
) -> AsyncIterator[str]:
    try:
        async for event in turns.run_turn(turn_input, stream=True):
            if isinstance(event, TextDelta):
                yield turns.sse("delta", {"text": event.text})
            elif isinstance(event, ItemAdded):
                html = render_to_string("agents/_output_item.html", {"item": event.item})
                yield turns.sse("item", {"html": html})
            else:
                html = await sync_to_async(_sent_html)(request, turn_input, event.turn, is_new)
                url = _conversation_url(turn_input) if is_new else ""
                yield turns.sse("done", {"html": html, "url": url})
    except ValidationError as exc:
        yield turns.sse("error", {"message": " ".join(exc.messages)})
    except turns.TurnInProgress as exc:
        yield turns.sse("error", {"message": str(exc)})


@require_GET
@login_required
def chat_turn_by_key(request: HttpRequest, pk: int) -> HttpResponse:
    """The turn a key's send saved (after Stop, the browser asks for it); 404 until it is."""
    deployment = _get_chat_deployment(request.user, pk)
    turn = turn_log.keyed_turn(request.user, request.GET.get("key", "")[:64])
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


def _turn_input(request: HttpRequest, user, pk: int) -> tuple[turns.TurnInput, bool]:
    """Checks the posted turn and finds (or starts) its conversation; ValidationError if bad."""
    deployment = _get_chat_deployment(user, pk)
    conversation_id = request.POST.get("conversation_id", "")
    key = request.POST.get("idempotency_key", "").strip()[:64]
    message = request.POST.get("message", "")
    inputs = custom_inputs.parse_custom_inputs_text(request.POST.get("custom_inputs", ""))
    chat.validate_turn(deployment=deployment, message=message, custom_inputs=inputs)
    # A retried send goes to its first send's conversation (it must not start another).
    conversation = turn_log.conversation_of_key(user, key)
    if conversation is None and conversation_id:
        conversation = selectors.conversation_get_for_user(user, deployment, conversation_id)
    if conversation is None:
        conversation = chat.conversation_create(deployment=deployment, user=user)
    turn_input = turns.TurnInput(
        deployment=deployment,
        user=user,
        conversation=conversation,
        message=message,
        custom_inputs=inputs,
        idempotency_key=key,
    )
    return turn_input, not conversation_id


def _sent_html(
    request: HttpRequest, turn_input: turns.TurnInput, turn: RequestLog, is_new: bool
) -> str:
    deployment = turn_input.deployment
    context = {
        "deployment": deployment,
        "turn": turn,
        "conversation": turn_input.conversation,
        "conversations": selectors.conversations_of(turn_input.user, deployment)[:100],
        "new_conversation": is_new,
    }
    return render_to_string("agents/chat.html#sent", context, request=request)


def _conversation_url(turn_input: turns.TurnInput) -> str:
    chat_url = reverse("agents:chat", args=[turn_input.deployment.pk])
    return f"{chat_url}?c={turn_input.conversation.pk}"


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
        chat.conversation_rename(conversation=conversation, title=request.POST.get("title", ""))
    context = {
        "deployment": deployment,
        "conversation": conversation,
        "conversations": selectors.conversations_of(request.user, deployment)[:100],
    }
    return render(request, "agents/chat.html#conversation-list", context)
