"""One adapter per agent schema: build the request body, read the reply (protocol.md §1, §2).

Every adapter returns the same AgentReply, so the rest of the app never looks at a schema.
Replies are untrusted: anything unexpected raises AgentReplyError with a message for people.
"""

from dataclasses import dataclass
from typing import Any

from agents.models import AgentSchema


class AgentReplyError(Exception):
    """The agent answered, but not in the shape its schema promises."""


@dataclass
class AgentReply:
    text: str
    custom_outputs: Any
    databricks_request_id: str | None
    trace: dict | None


def _with_inputs_and_options(body: dict, custom_inputs: dict, conversation_id: str) -> dict:
    """Every schema carries custom_inputs and asks for the trace the same way (protocol.md §1.2)."""
    if custom_inputs:
        body["custom_inputs"] = custom_inputs
    body["databricks_options"] = {"return_trace": True, "conversation_id": conversation_id}
    return body


def _text_of(content: Any) -> str:
    """Message content is a string or a list of parts ({"type": "text", "text": ...})."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, dict)]
        if texts and all(isinstance(t, str) for t in texts):
            return "".join(texts)
    if content is None:
        return ""
    raise AgentReplyError("the message content is neither text nor a list of text parts")


def _databricks_output(body: dict) -> tuple[str | None, dict | None]:
    output = body.get("databricks_output")
    if not isinstance(output, dict):
        return None, None
    request_id = output.get("databricks_request_id")
    trace = output.get("trace")
    return (
        request_id if isinstance(request_id, str) and request_id else None,
        trace if isinstance(trace, dict) else None,
    )


class ChatCompletionsAdapter:
    """Chat-completions agents (task agent/v1/chat) and OpenAI-compatible endpoints."""

    def build_request(
        self, *, messages: list[dict], custom_inputs: dict, conversation_id: str
    ) -> dict:
        return _with_inputs_and_options({"messages": messages}, custom_inputs, conversation_id)

    def parse_reply(self, body: Any) -> AgentReply:
        if not isinstance(body, dict):
            raise AgentReplyError("the answer is not a JSON object")
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise AgentReplyError("the answer has no `choices` (expected a chat completion)")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise AgentReplyError("the first choice has no `message`")
        request_id, trace = _databricks_output(body)
        return AgentReply(
            text=_text_of(message.get("content")),
            custom_outputs=body.get("custom_outputs"),
            databricks_request_id=request_id,
            trace=trace,
        )


class LegacySplitAdapter:
    """Deprecated {query, history} → {content} agents (mlflow.models.rag_signatures)."""

    def build_request(
        self, *, messages: list[dict], custom_inputs: dict, conversation_id: str
    ) -> dict:
        body = {"query": messages[-1]["content"], "history": messages[:-1]}
        return _with_inputs_and_options(body, custom_inputs, conversation_id)

    def parse_reply(self, body: Any) -> AgentReply:
        if not isinstance(body, dict):
            raise AgentReplyError("the answer is not a JSON object")
        content = body.get("content")
        if not isinstance(content, str):
            # Databricks itself also accepts a chat completion from these agents.
            if "choices" in body:
                return ChatCompletionsAdapter().parse_reply(body)
            raise AgentReplyError("the answer has no `content` string (expected {content})")
        request_id, trace = _databricks_output(body)
        return AgentReply(
            text=content,
            custom_outputs=body.get("custom_outputs"),
            databricks_request_id=request_id,
            trace=trace,
        )


class AutoAdapter(ChatCompletionsAdapter):
    """Until a schema is known: ask in chat-completions form, read either known reply shape."""

    def parse_reply(self, body: Any) -> AgentReply:
        if (
            isinstance(body, dict)
            and "choices" not in body
            and isinstance(body.get("content"), str)
        ):
            return LegacySplitAdapter().parse_reply(body)
        return super().parse_reply(body)


_ADAPTERS = {
    AgentSchema.AUTO: AutoAdapter,
    AgentSchema.CHAT_COMPLETIONS: ChatCompletionsAdapter,
    AgentSchema.LEGACY_SPLIT: LegacySplitAdapter,
}


def adapter_for(schema: str) -> ChatCompletionsAdapter | LegacySplitAdapter:
    try:
        return _ADAPTERS[schema]()
    except KeyError:
        label = AgentSchema(schema).label if schema in AgentSchema.values else schema
        raise AgentReplyError(
            f"This version of Review App cannot talk to {label} endpoints yet."
        ) from None
