"""The chat page and its htmx fragments. Thin: authorize, call the chat service, render."""

from contextlib import suppress

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url, reswap, retarget

from agents import chat, custom_inputs, selectors
from agents.models import Deployment
from reviewapp import roles


def _get_chat_deployment(request: HttpRequest, pk: int) -> Deployment:
    if not roles.can_chat(request.user):
        raise PermissionDenied("Your account has no role that may chat.")
    return selectors.deployment_get_for_user(request.user, pk)


@require_GET
@login_required
def chat_page(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = _get_chat_deployment(request, pk)
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
    }
    return render(request, "agents/chat.html", context)


@require_POST
@login_required
def chat_send(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = _get_chat_deployment(request, pk)
    conversation_id = request.POST.get("conversation_id", "")
    try:
        message = request.POST.get("message", "")
        inputs = custom_inputs.parse_custom_inputs_text(request.POST.get("custom_inputs", ""))
        chat.validate_turn(deployment=deployment, message=message, custom_inputs=inputs)
        if conversation_id:
            conversation = selectors.conversation_get_for_user(
                request.user, deployment, conversation_id
            )
        else:
            conversation = chat.conversation_create(deployment=deployment, user=request.user)
        turn = chat.chat_turn(
            deployment=deployment,
            user=request.user,
            conversation=conversation,
            message=message,
            custom_inputs=inputs,
        )
    except ValidationError as exc:
        response = render(request, "agents/chat.html#composer-error", {"errors": exc.messages})
        return reswap(retarget(response, "#composer-error"), "innerHTML")
    context = {
        "deployment": deployment,
        "turn": turn,
        "conversation": conversation,
        "conversations": selectors.conversations_of(request.user, deployment)[:100],
        "new_conversation": not conversation_id,
    }
    response = render(request, "agents/chat.html#sent", context)
    if not conversation_id:
        response = push_url(response, f"{reverse('agents:chat', args=[pk])}?c={conversation.pk}")
    return response


@require_POST
@login_required
def custom_inputs_check(request: HttpRequest, pk: int) -> HttpResponse:
    """Checked while typing (htmx, debounced): the same rules the send applies."""
    deployment = _get_chat_deployment(request, pk)
    try:
        custom_inputs.check_custom_inputs_text(deployment, request.POST.get("custom_inputs", ""))
        errors: list[str] = []
    except ValidationError as exc:
        errors = exc.messages
    return render(request, "agents/chat.html#custom-inputs-status", {"errors": errors})


@require_POST
@login_required
def conversation_rename(request: HttpRequest, pk: int, conversation_id: str) -> HttpResponse:
    deployment = _get_chat_deployment(request, pk)
    conversation = selectors.conversation_get_for_user(request.user, deployment, conversation_id)
    with suppress(ValidationError):  # an empty name keeps the old one
        chat.conversation_rename(conversation=conversation, title=request.POST.get("title", ""))
    context = {
        "deployment": deployment,
        "conversation": conversation,
        "conversations": selectors.conversations_of(request.user, deployment)[:100],
    }
    return render(request, "agents/chat.html#conversation-list", context)
