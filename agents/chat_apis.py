"""REST API for chat turns and the request log."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.authentication import TokenAuthentication
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from agents import selectors, turns
from agents.background import collect
from agents.models import RequestLog
from agents.schemas import ItemAdded, TextDelta
from agents.traces import normalize_trace
from agents.turns.start import UNSET
from reviewapp.api import body_too_large
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


class BackgroundRunSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The run's id at the agent.")
    state = serializers.ChoiceField(choices=["running", "finished"])

    class Meta:
        ref_name = "BackgroundRun"


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
    background_run = BackgroundRunSerializer(
        required=False,
        help_text="Only on a turn the agent answers in the background (Agent Runtime, "
        "LongRunningAgentServer): while `running`, the answer is not there yet; read the turn "
        "again (GET /api/v1/requests/{request_id}/) until it is `finished`.",
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
        if turn.agent_run_id:
            data["background_run"] = {"id": turn.agent_run_id, "state": turn.agent_run_state}
        if self.context.get("with_trace"):
            # A turn just saved carries its trace normalized (agents/turns/record.py).
            normalized = getattr(turn, "normalized_trace", None)
            if normalized is None and turn.trace:
                normalized = normalize_trace(turn.trace)
            data["trace"] = normalized.to_dict() if normalized is not None else None
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


class ChatTurnRequestSerializer(serializers.Serializer):
    """The chat turn's body; both entry points (`chat_api`, agents/lean_chat_api.py) check it."""

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


# One instance checks every body: `run_validation` keeps no state on it, and a new serializer
# per turn deep-copied its declared fields each time (the top function of a turn's profile).
_TURN_REQUEST = ChatTurnRequestSerializer()
TRACE_FORMS = ["normalized", "raw", "none"]


class ChatTurnDocumentation(APIView):
    """POST /api/v1/deployments/{id}/chat/ as the OpenAPI schema describes it. Only the schema's
    URLs route here (reviewapp/api_schema_urls.py): the turn is served by `chat_api` and the
    lean path, without DRF's dispatch, and both answer as documented (tests/test_openapi.py)."""

    @extend_schema(
        request=ChatTurnRequestSerializer,
        parameters=[
            OpenApiParameter(
                "trace",
                str,
                enum=TRACE_FORMS,
                description="The answer's trace as one span tree (default), as the agent "
                "returned it, or left out.",
            )
        ],
        responses={
            200: TurnOutputSerializer,
            400: ProblemSerializer,
            409: ProblemSerializer,
            502: ChatFailureSerializer,
            503: ProblemSerializer,
        },
        description="One chat turn: 200 with the answer and its trace, or 502 when the agent "
        "failed. With `stream: true` (and a deployment that streams) the answer comes as "
        "server-sent events `delta` {text}, `item` {item}, then `done` (the same object as the "
        "200). An `idempotency_key` makes a retried POST return the first send's turn. A 503 "
        "with Retry-After means the server carries as many turns as it may: nothing was sent.",
    )
    def post(self, request: Request, pk: int) -> Response:
        raise exceptions.MethodNotAllowed("POST", detail="Served by agents.chat_apis.chat_api.")


@dataclass
class ChatAnswer:
    """What the chat API answers, for either entry point to write: JSON, or an event stream."""

    status: int
    body: dict | None = None
    events: AsyncIterator[str] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def django_response(self) -> HttpResponse:
        if self.events is not None:
            response = StreamingHttpResponse(self.events, content_type="text/event-stream")
        else:
            response = JsonResponse(self.body, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


async def chat_answer(
    pk: int, data: object, *, user=None, api_token: str = "", trace_form: str = "normalized"
) -> ChatAnswer:
    """The API's chat turn for a signed-in `user`, or for the user of `api_token` (found by the
    turn service in the same database step): the body checked, then the turn service."""
    if trace_form not in TRACE_FORMS:
        return ChatAnswer(400, {"trace": [f"Pick one of {', '.join(TRACE_FORMS)}."]})
    try:
        checked = _TURN_REQUEST.run_validation(data)
    except serializers.ValidationError as exc:
        return ChatAnswer(400, exc.detail)
    history, message = None, checked.get("message")
    if "messages" in checked:
        *history, last = [dict(m) for m in checked["messages"]]
        message = last["content"]
    try:
        started = await turns.turn_start(
            user=user,
            api_token=api_token,
            deployment_id=pk,
            message=message,
            custom_inputs=checked.get("custom_inputs", UNSET),
            conversation_id=checked.get("conversation_id"),
            history=history,
            idempotency_key=checked.get("idempotency_key", ""),
        )
    except turns.Overloaded as exc:
        return ChatAnswer(503, {"detail": str(exc)}, headers=_retry_after(exc))
    except turns.NotAuthenticated as exc:
        www_authenticate = {"WWW-Authenticate": TokenAuthentication.keyword}
        return ChatAnswer(401, {"detail": str(exc)}, headers=www_authenticate)
    except PermissionDenied as exc:
        return ChatAnswer(403, {"detail": str(exc) or "You may not do this."})
    except Http404 as exc:
        return ChatAnswer(404, {"detail": str(exc) or "Not found."})
    except DjangoValidationError as exc:
        return ChatAnswer(400, {"non_field_errors": exc.messages})
    if checked["stream"] and started.deployment.streaming:
        events = _api_events(started, trace_form)
        return ChatAnswer(200, events=events, headers={"Cache-Control": "no-cache"})
    try:
        turn = await turns.send_turn(started)
    except turns.TurnInProgress as exc:
        return ChatAnswer(409, {"detail": str(exc)})
    return ChatAnswer(502 if turn.error else 200, _turn_body(turn, trace_form))


def _retry_after(exc: turns.Overloaded) -> dict[str, str]:
    return {"Retry-After": str(exc.retry_after_s)}


async def chat_api(request: HttpRequest, pk: int) -> HttpResponse:
    """POST /api/v1/deployments/{id}/chat/ through Django (a browser's session, the test
    client). Token calls under uvicorn take the lean path first (agents/lean_chat_api.py)."""
    if request.method != "POST":
        return JsonResponse({"detail": f'Method "{request.method}" not allowed.'}, status=405)
    api_request = Request(
        request,
        parsers=[parser() for parser in api_settings.DEFAULT_PARSER_CLASSES],
        authenticators=[auth() for auth in api_settings.DEFAULT_AUTHENTICATION_CLASSES],
    )
    try:
        user, data = await sync_to_async(_user_and_body)(api_request)
    except exceptions.APIException as exc:
        response = JsonResponse({"detail": exc.detail}, status=exc.status_code)
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            response.status_code = 401
            response["WWW-Authenticate"] = TokenAuthentication.keyword
        return response
    except RequestDataTooBig:
        detail = body_too_large()
        return JsonResponse({"detail": detail}, status=413)
    trace_form = request.GET.get("trace", "normalized")
    answer = await chat_answer(pk, data, user=user, trace_form=trace_form)
    return answer.django_response()


chat_api.csrf_exempt = True  # SessionAuthentication enforces CSRF for session callers


def _user_and_body(api_request: Request) -> tuple[object, object]:
    """DRF's authenticators (CSRF included for a session) and parser, without its dispatch."""
    user = api_request.user
    if not user or not user.is_authenticated:
        raise exceptions.NotAuthenticated()
    return user, api_request.data


async def _api_events(started: turns.StartedTurn, trace_form: str) -> AsyncIterator[str]:
    try:
        async for event in turns.run_turn(started, stream=True):
            if isinstance(event, TextDelta):
                yield turns.sse("delta", {"text": event.text})
            elif isinstance(event, ItemAdded):
                yield turns.sse("item", {"item": event.item})
            else:
                yield turns.sse("done", _turn_body(event.turn, trace_form))
    except turns.TurnInProgress as exc:
        yield turns.sse("error", {"detail": str(exc)})


def _turn_body(turn: RequestLog, trace_form: str) -> dict:
    if turn.error and not turn.incomplete:
        return {
            "error": turn.error,
            "detail": turn.error_detail,
            "request_id": turn.databricks_request_id,
        }
    with_trace = trace_form == "normalized"
    data = TurnOutputSerializer(turn, context={"with_trace": with_trace}).data
    if trace_form == "raw":
        data["trace"] = turn.trace
    return data


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
        if turn.agent_run_state == "running":
            # Asks the agent how the run stands: an API client polling a background turn sees it
            # finish even where no Celery beat runs (read again: with its trace, if it ended).
            collect.refresh_now(turn)
            turn = selectors.request_get_for_user(
                request.user, request_id, with_trace=form != "none"
            )
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
