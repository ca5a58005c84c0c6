"""What every agent schema shares: the reply, stream events, errors and the envelope fields.

The envelope (protocol.md §2.2-2.3, §1.6) is the same whatever the schema: `databricks_output`
{trace, databricks_request_id}, `custom_outputs`, an AgentServer `trace_id` or `error`. Each
schema module only reads its own answer shape. Agent output is untrusted: anything that is not
the promised shape raises AgentReplyError with a message a person understands.
"""

import json
from dataclasses import dataclass, field
from typing import Any

ERROR_MESSAGE_LIMIT = 500
TEXT_SEPARATOR = "\n\n"  # between the texts of separate assistant messages
ROLES = ("user", "assistant", "system")


class AgentReplyError(Exception):
    """The agent answered, but not in the shape its schema promises."""


class AgentStreamError(AgentReplyError):
    """The stream carried an error event; str(exc) is the agent's own message."""

    def __init__(self, message: str):
        super().__init__(message[:ERROR_MESSAGE_LIMIT])


@dataclass
class AgentReply:
    text: str
    custom_outputs: Any = None
    databricks_request_id: str | None = None
    trace: dict | None = None
    trace_id: str | None = None
    items: list[dict] = field(default_factory=list)
    schema: str = ""


@dataclass
class TextDelta:
    text: str


@dataclass
class ItemAdded:
    item: dict


StreamEvent = TextDelta | ItemAdded


def error_message(error: Any) -> str:
    """An agent's error as text: a string, or an object with a `message` (OpenAI, AgentServer)."""
    if isinstance(error, str):
        return error
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return f"the agent reported an error: {json.dumps(error, default=str)}"


def as_output_string(value: Any) -> str:
    """Tool outputs are shown as text; structured ones keep their JSON form."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def text_of(content: Any, what: str = "the message content") -> str:
    """Content is a string, or a list of text parts ({"text"}; a refusal part's {"refusal"})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict) and isinstance(part.get("refusal"), str):
                texts.append(part["refusal"])
            else:
                break
        else:
            return "".join(texts)
    raise AgentReplyError(f"{what} is neither text nor a list of text parts")


def require_dict(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise AgentReplyError(f"{what} is not a JSON object")
    return value


def optional_str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise AgentReplyError(f"{what} is not a string")
    return value


def tool_call_item(call_id: str, name: str, arguments: Any) -> dict:
    return {"kind": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def tool_result_item(call_id: str, name: str, output: Any) -> dict:
    return {
        "kind": "tool_result",
        "call_id": call_id,
        "name": name,
        "output": as_output_string(output),
    }


def openai_tool_call_item(call: Any) -> dict:
    """A chat-completions or ChatAgent {"id", "function": {"name", "arguments"}} tool call."""
    call = require_dict(call, "a tool call")
    function = require_dict(call.get("function"), "a tool call's `function`")
    arguments = function.get("arguments")
    return tool_call_item(
        optional_str(call.get("id"), "a tool call's `id`"),
        optional_str(function.get("name"), "a tool call's function name"),
        arguments if isinstance(arguments, str) or arguments is None else json.dumps(arguments),
    )


class ReplyFacts:
    """The envelope fields, kept across a whole body or stream: the last non-empty value wins."""

    def __init__(self) -> None:
        self.custom_outputs: Any = None
        self.databricks_request_id: str | None = None
        self.trace: dict | None = None
        self.trace_id: str | None = None

    def absorb(self, body: dict) -> None:
        if body.get("error") is not None:
            raise AgentStreamError(error_message(body["error"]))
        output = body.get("databricks_output")
        if isinstance(output, dict):
            if isinstance(output.get("trace"), dict) and output["trace"]:
                self.trace = output["trace"]
            request_id = output.get("databricks_request_id")
            if isinstance(request_id, str) and request_id:
                self.databricks_request_id = request_id
        self.keep_custom_outputs(body.get("custom_outputs"))
        self.keep_trace_id(body.get("trace_id"))

    def keep_custom_outputs(self, value: Any) -> None:
        if value is not None:
            self.custom_outputs = value

    def keep_trace_id(self, value: Any) -> None:
        if value is None or value == "":
            return
        if not isinstance(value, str):
            raise AgentReplyError("the agent's `trace_id` is not a string")
        self.trace_id = value

    def reply(self, text: str, items: list[dict], schema: str) -> AgentReply:
        return AgentReply(
            text=text,
            custom_outputs=self.custom_outputs,
            databricks_request_id=self.databricks_request_id,
            trace=self.trace,
            trace_id=self.trace_id,
            items=items,
            schema=schema,
        )


class MessageTexts:
    """Assistant text per message, in order; streamed pieces must add up to the final text."""

    def __init__(self) -> None:
        self._texts: dict[Any, str] = {}

    def append(self, key: Any, piece: str) -> str:
        """Add a piece; returns what to stream (a separator first when a new message begins)."""
        if not piece:
            return ""
        current = self._texts.get(key, "")
        starts_new = not current and any(self._texts.values())
        self._texts[key] = current + piece
        return TEXT_SEPARATOR + piece if starts_new else piece

    def has(self, key: Any) -> bool:
        return bool(self._texts.get(key))

    def replace(self, key: Any, text: str) -> None:
        self._texts[key] = text

    def text(self) -> str:
        return TEXT_SEPARATOR.join(text for text in self._texts.values() if text)


class StreamAssembler:
    """Reads one schema's stream chunk by chunk; subclasses implement `_feed` and `_assembled`."""

    schema = ""

    def __init__(self) -> None:
        self.facts = ReplyFacts()

    def feed(self, chunk: Any) -> list[StreamEvent]:
        chunk = require_dict(chunk, "a stream chunk")
        self.facts.absorb(chunk)
        return self._feed(chunk)

    def reply(self) -> AgentReply:
        text, items = self._assembled()
        return self.facts.reply(text, items, self.schema)

    def _feed(self, chunk: dict) -> list[StreamEvent]:
        return []

    def _assembled(self) -> tuple[str, list[dict]]:
        return "", []


class Adapter:
    """One agent schema: the request body it expects and the reply it gives (streamed or not)."""

    schema = ""
    assembler_class: type[StreamAssembler] = StreamAssembler

    def build_request(
        self,
        *,
        messages: list[dict],
        custom_inputs: dict,
        conversation_id: str,
        user_id: str,
        stream: bool,
        databricks_options: bool,
        model: str = "",
    ) -> dict:
        messages = checked_messages(messages)
        body = self._payload(messages, conversation_id=conversation_id, user_id=user_id)
        if custom_inputs:
            body["custom_inputs"] = custom_inputs
        if databricks_options:
            body["databricks_options"] = {"return_trace": True, "conversation_id": conversation_id}
        if stream:
            body["stream"] = True
        if model:
            body["model"] = model
        return body

    def parse_reply(self, body: Any) -> AgentReply:
        body = require_dict(body, "the answer")
        facts = ReplyFacts()
        try:
            facts.absorb(body)
        except AgentStreamError as exc:
            raise AgentReplyError(f"The agent reported an error: {exc}") from None
        metadata = body.get("metadata")
        if isinstance(metadata, dict):
            facts.keep_trace_id(metadata.get("trace_id"))
        text, items = self._read(body)
        return facts.reply(text, items, self.schema)

    def assembler(self) -> StreamAssembler:
        return self.assembler_class()

    def _payload(self, messages: list[dict], *, conversation_id: str, user_id: str) -> dict:
        raise NotImplementedError

    def _read(self, body: dict) -> tuple[str, list[dict]]:
        raise NotImplementedError


def checked_messages(messages: list[dict]) -> list[dict]:
    """Our own conversation, copied to {role, content}; a malformed one is a bug in the caller."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("an agent request needs at least one message")
    checked = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise ValueError(f"a message must be {{role: {'|'.join(ROLES)}, content: str}}")
        checked.append({"role": role, "content": content})
    return checked
