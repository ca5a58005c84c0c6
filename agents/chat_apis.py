"""REST API for chat turns and the request log."""

from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import chat, selectors
from agents.models import RequestLog
from agents.traces import normalize_trace
from reviewapp import roles


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant"])
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class TurnOutputSerializer(serializers.Serializer):
    """A turn as the chat API and the request detail API answer it."""

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
            "created_at": turn.created_at.isoformat(),
        }
        if turn.error:
            data["error"] = {"message": turn.error, "detail": turn.error_detail}
        if self.context.get("with_trace"):
            data["trace"] = normalize_trace(turn.trace).to_dict() if turn.trace else None
        return data


class DeploymentChatApi(APIView):
    class InputSerializer(serializers.Serializer):
        message = serializers.CharField(required=False, max_length=100_000)
        messages = MessageSerializer(many=True, required=False, allow_empty=False)
        conversation_id = serializers.UUIDField(required=False)
        custom_inputs = serializers.JSONField(required=False)

        def validate(self, data: dict) -> dict:
            if ("message" in data) == ("messages" in data):
                raise serializers.ValidationError("Send either `message` or `messages`.")
            if "messages" in data and data["messages"][-1]["role"] != "user":
                raise serializers.ValidationError(
                    {"messages": ["The last message must be the user's."]}
                )
            return data

    @extend_schema(request=InputSerializer, responses={200: TurnOutputSerializer, 502: dict})
    def post(self, request: Request, pk: int) -> Response:
        """One chat turn: 200 with the answer and its trace, or 502 when the agent failed."""
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
        if "conversation_id" in data:
            conversation = selectors.conversation_get_for_user(
                request.user, deployment, data["conversation_id"]
            )
        else:
            chat.validate_turn(
                deployment=deployment,
                message=message,
                custom_inputs=data.get("custom_inputs", deployment.default_custom_inputs),
            )
            conversation = chat.conversation_create(deployment=deployment, user=request.user)
        turn = chat.chat_turn(
            deployment=deployment,
            user=request.user,
            conversation=conversation,
            message=message,
            custom_inputs=data.get("custom_inputs", conversation.custom_inputs),
            history=history,
        )
        if turn.error:
            body = {
                "error": turn.error,
                "detail": turn.error_detail,
                "request_id": turn.databricks_request_id,
            }
            return Response(body, status=status.HTTP_502_BAD_GATEWAY)
        output = TurnOutputSerializer(turn, context={"with_trace": True}).data
        return Response(output)


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
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(turns, request, view=self)
        return paginator.get_paginated_response(TurnOutputSerializer(page, many=True).data)
