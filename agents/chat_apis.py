"""REST API for chat turns and the request log."""

from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import chat, selectors, turn_log
from agents.models import RequestLog
from agents.schemas import ItemAdded, TextDelta
from agents.traces import normalize_trace
from agents.turns import TurnInProgress, TurnInput, run_turn, send_turn, sse
from reviewapp import roles
from reviewapp.jsonlimits import DepthLimitedJSONField

CHAT_ROLES = ["system", "user", "assistant"]


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=CHAT_ROLES)
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)

    class Meta:
        ref_name = "ChatMessage"


class TurnErrorSerializer(serializers.Serializer):
    message = serializers.CharField(help_text="Why the turn failed, in words.")
    detail = serializers.CharField(help_text="Status and body excerpt, for experts.")

    class Meta:
        ref_name = "TurnError"


class TurnOutputSerializer(serializers.Serializer):
    """A turn as the chat API and the request detail API answer it.

    The fields describe the answer for the OpenAPI schema; `to_representation` builds it in one
    step, as before they were declared, and tests/test_openapi.py checks real answers against
    the schema so the two stay the same."""

    request_id = serializers.CharField(help_text="The id a rating refers to.")
    conversation_id = serializers.UUIDField(allow_null=True)
    deployment = serializers.IntegerField()
    status_code = serializers.IntegerField(help_text="The agent's HTTP status.")
    message = MessageSerializer(help_text="The answer (role `assistant`).")
    request = serializers.CharField(help_text="The user's message.")
    custom_inputs = serializers.JSONField(help_text="What was sent as `custom_inputs`.")
    custom_outputs = serializers.JSONField(allow_null=True)
    execution_time_ms = serializers.IntegerField()
    output_items = serializers.ListField(
        child=serializers.DictField(), help_text="Tool calls, tool results and reasoning."
    )
    incomplete = serializers.BooleanField(help_text="A stream cut or stopped before the end.")
    created_at = serializers.DateTimeField()
    error = TurnErrorSerializer(required=False, help_text="Only on a failed or incomplete turn.")
    trace = serializers.DictField(
        required=False,
        allow_null=True,
        help_text="The MLflow trace as one span tree, or raw with `?trace=raw`; null when the "
        "agent returned none. Left out of lists and with `?trace=none`.",
    )
    trace_error = serializers.CharField(
        required=False, help_text="Why an AgentServer trace could not be read (yet)."
    )

    class Meta:
        ref_name = "Turn"

    def to_representation(self, turn: RequestLog) -> dict:
        data = {
            "request_id": turn.databricks_request_id,
            "conversation_id": str(turn.conversation_id) if turn.conversation_id else None,
            "deployment": turn.deployment_id,
            "status_code": turn.status_code,
            "message": {"role": "assistant", "content": turn.response},
            "request": turn.request,
            "custom_inputs": turn.custom_inputs,
            "custom_outputs": turn.custom_outputs,
            "execution_time_ms": turn.execution_time_ms,
            "output_items": turn.output_items,
            "incomplete": turn.incomplete,
            "created_at": turn.created_at.isoformat(),
        }
        if turn.error:
            data["error"] = {"message": turn.error, "detail": turn.error_detail}
        if self.context.get("with_trace"):
            data["trace"] = normalize_trace(turn.trace).to_dict() if turn.trace else None
            if getattr(turn, "trace_error", ""):  # an AgentServer trace not on MLflow yet
                data["trace_error"] = turn.trace_error
        return data


class ProblemSerializer(serializers.Serializer):
    detail = serializers.CharField()

    class Meta:
        ref_name = "Problem"


class ChatFailureSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="Why the agent failed, in words.")
    detail = serializers.CharField(help_text="Status and body excerpt, for experts.")
    request_id = serializers.CharField(help_text="The failed turn, kept in the request log.")

    class Meta:
        ref_name = "ChatFailure"


class DeploymentChatApi(APIView):
    """Checks a chat turn (auth, permissions, body) the DRF way; `chat_api` below then sends it
    asynchronously. `post` answers an error, or a 202 carrying the checked turn for `chat_api`."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ChatTurnRequest"

        message = serializers.CharField(required=False, max_length=100_000)
        messages = MessageSerializer(many=True, required=False, allow_empty=False)
        conversation_id = serializers.UUIDField(required=False)
        custom_inputs = DepthLimitedJSONField(required=False)
        idempotency_key = serializers.CharField(required=False, max_length=64)
        stream = serializers.BooleanField(required=False, default=False)

        def validate(self, data: dict) -> dict:
            if ("message" in data) == ("messages" in data):
                raise serializers.ValidationError("Send either `message` or `messages`.")
            if "messages" in data and data["messages"][-1]["role"] != "user":
                raise serializers.ValidationError(
                    {"messages": ["The last message must be the user's."]}
                )
            return data

    @extend_schema(
        request=InputSerializer,
        responses={
            200: TurnOutputSerializer,
            400: ProblemSerializer,
            409: ProblemSerializer,
            502: ChatFailureSerializer,
        },
        description="One chat turn: 200 with the answer and its trace, or 502 when the agent "
        "failed. With `stream: true` (and a deployment that streams) the answer comes as "
        "server-sent events `delta` {text}, `item` {item}, then `done` (the same object as the "
        "200). An `idempotency_key` makes a retried POST return the first send's turn.",
    )
    def post(self, request: Request, pk: int) -> Response:
        if not roles.can_chat(request.user):
            raise PermissionDenied("Your account has no role that may chat.")
        deployment = selectors.deployment_get_for_user(request.user, pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        history, message = None, data.get("message")
        if "messages" in data:
            *history, last = [dict(m) for m in data["messages"]]
            message = last["content"]
        key = data.get("idempotency_key", "")
        # A retried send goes to its first send's conversation (it must not start another).
        conversation = turn_log.conversation_of_key(request.user, key)
        if conversation is None and "conversation_id" in data:
            conversation = selectors.conversation_get_for_user(
                request.user, deployment, data["conversation_id"]
            )
        if conversation is None:
            chat.validate_turn(
                deployment=deployment,
                message=message,
                custom_inputs=data.get("custom_inputs", deployment.default_custom_inputs),
            )
            conversation = chat.conversation_create(deployment=deployment, user=request.user)
        response = Response(status=status.HTTP_202_ACCEPTED)
        response.turn_input = TurnInput(
            deployment=deployment,
            user=request.user,
            conversation=conversation,
            message=message,
            custom_inputs=data.get("custom_inputs", conversation.custom_inputs),
            history=history,
            idempotency_key=key,
        )
        response.stream = data["stream"] and deployment.streaming
        return response


_check_turn = DeploymentChatApi.as_view()


async def chat_api(request: HttpRequest, pk: int) -> HttpResponse:
    """POST /api/v1/deployments/{id}/chat/: checked by DeploymentChatApi in a thread, then sent
    on the event loop, so a slow agent holds no thread."""
    checked = await sync_to_async(_check_turn)(request, pk=pk)
    turn_input = getattr(checked, "turn_input", None)
    if turn_input is None:
        return checked
    if checked.stream:
        response = StreamingHttpResponse(_api_events(turn_input), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        return response
    try:
        done = await send_turn(turn_input)
    except (DjangoValidationError, TurnInProgress) as exc:
        return JsonResponse(_problem(exc), status=_problem_status(exc))
    return JsonResponse(_turn_body(done.turn), status=502 if done.turn.error else 200)


chat_api.csrf_exempt = True  # DeploymentChatApi enforces CSRF for session-authenticated calls
chat_api.cls = DeploymentChatApi  # so the OpenAPI schema documents it
chat_api.initkwargs = {}


async def _api_events(turn_input: TurnInput) -> AsyncIterator[str]:
    try:
        async for event in run_turn(turn_input, stream=True):
            if isinstance(event, TextDelta):
                yield sse("delta", {"text": event.text})
            elif isinstance(event, ItemAdded):
                yield sse("item", {"item": event.item})
            else:
                yield sse("done", _turn_body(event.turn))
    except (DjangoValidationError, TurnInProgress) as exc:
        yield sse("error", _problem(exc))


def _turn_body(turn: RequestLog) -> dict:
    if turn.error and not turn.incomplete:
        return {
            "error": turn.error,
            "detail": turn.error_detail,
            "request_id": turn.databricks_request_id,
        }
    return TurnOutputSerializer(turn, context={"with_trace": True}).data


def _problem(exc: Exception) -> dict:
    if isinstance(exc, DjangoValidationError):
        return {"detail": " ".join(exc.messages)}
    return {"detail": str(exc)}


def _problem_status(exc: Exception) -> int:
    return 400 if isinstance(exc, DjangoValidationError) else 409


class RequestDetailApi(APIView):
    class QuerySerializer(serializers.Serializer):
        trace = serializers.ChoiceField(
            choices=["normalized", "raw", "none"], default="normalized", required=False
        )

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "trace",
                str,
                enum=["normalized", "raw", "none"],
                description="The trace as one span tree (default), as the agent returned it, "
                "or left out (big traces are tens of MB).",
            )
        ],
        responses=TurnOutputSerializer,
    )
    def get(self, request: Request, request_id: str) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        form = query.validated_data["trace"]
        turn = selectors.request_get_for_user(request.user, request_id, with_trace=form != "none")
        data = TurnOutputSerializer(turn, context={"with_trace": form == "normalized"}).data
        if form == "raw":
            data["trace"] = turn.trace
        return Response(data)


class RequestListApi(APIView):
    pagination_class = PageNumberPagination  # also tells the OpenAPI schema the page's shape

    class FilterSerializer(serializers.Serializer):
        deployment = serializers.IntegerField(required=False)
        conversation_id = serializers.UUIDField(required=False)

    @extend_schema(
        parameters=[OpenApiParameter("deployment", int), OpenApiParameter("conversation_id", str)],
        responses=TurnOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        """Turns you may see, newest first, without traces (fetch one for its trace)."""
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        turns = selectors.request_list(
            request.user,
            deployment_id=filters.validated_data.get("deployment", ""),
            conversation_id=filters.validated_data.get("conversation_id", ""),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(turns, request, view=self)
        return paginator.get_paginated_response(TurnOutputSerializer(page, many=True).data)
