"""Parsing and checking request bodies; every failure is a 400 ApiError saying what is wrong.

Chat turns enter through `schema_requests.parse_turn_request(body, schema)`, which uses the
checks here for what the four schemas share. Checks are strict where a lenient server would hide
a client's bug (a `top_k` of "3", a `return_trace` of "yes"), and lenient where real agents are
(unknown `custom_inputs` keys and OpenAI parameters such as `temperature` are accepted and
ignored).
"""

import json
from dataclasses import dataclass, field
from typing import Any

from demo_agent.config import MAX_CHUNK_DELAY_MS
from demo_agent.errors import ApiError
from demo_agent.schemas import AgentSchema

STYLES = ("concise", "detailed", "bullets", "judge")
DEFAULT_TOP_K = 3
MAX_TOP_K = 10
ROLES = ("system", "developer", "user", "assistant", "tool")
MALFORMED_KINDS = ("not_json", "wrong_shape", "too_deep")
MAX_SIMULATED_DELAY_MS = 600_000


def bad(message: str, error_code: str = "INVALID_PARAMETER_VALUE") -> ApiError:
    return ApiError(400, message, error_code)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"the request body is not valid JSON: {exc}", "BAD_REQUEST") from None
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object", "BAD_REQUEST")
    return body


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


STREAM_ONLY_HOOKS = ("chunk_delay_ms", "cut_after_chunks", "stream_error")
SIMULATE_KEYS = ("delay_ms", "status", "malformed", *STREAM_ONLY_HOOKS)
MAX_CUT_AFTER_CHUNKS = 100_000
MAX_STREAM_ERROR_LENGTH = 1000


@dataclass
class Simulation:
    """`custom_inputs.simulate`: make this one turn slow or broken, for other tests."""

    delay_ms: int = 0
    status: int | None = None
    malformed: str | None = None
    # Streams only:
    chunk_delay_ms: int | None = None  # overrides the stream_chunk_delay_ms knob
    cut_after_chunks: int | None = None  # drop the connection after this many data events
    stream_error: str | None = None  # an error event, with this message, after a few chunks

    def stream_hooks(self) -> list[str]:
        return [name for name in STREAM_ONLY_HOOKS if getattr(self, name) is not None]


@dataclass
class ChatRequest:
    """One turn, whatever schema it arrived in, normalised for the agent."""

    body: dict[str, Any]  # as received: the root span's inputs
    messages: list[dict[str, Any]]  # chat-completions style {role, content} messages
    question: str  # text of the last user message: what the retriever searches for
    schema: AgentSchema = AgentSchema.CHAT_COMPLETIONS
    stream: bool = False
    top_k: int = DEFAULT_TOP_K
    style: str = "concise"
    return_trace: bool = False
    conversation_id: str | None = None
    user_id: str | None = None
    simulate: Simulation = field(default_factory=Simulation)


def message_text(content: Any) -> str:
    """Text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p.get("text"), str))
    return ""


def check_messages(messages: Any, field_name: str = "messages") -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise bad(f"`{field_name}` must be a non-empty list of {{role, content}} objects")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad(f"{field_name}[{i}] must be an object with `role` and `content`")
        if message.get("role") not in ROLES:
            raise bad(f"{field_name}[{i}].role must be one of {', '.join(ROLES)}")
        content = message.get("content")
        if content is None and message.get("tool_calls"):
            continue  # an assistant turn that only calls tools
        if isinstance(content, list):
            if not all(isinstance(p, dict) for p in content):
                raise bad(f"{field_name}[{i}].content parts must be objects")
        elif not isinstance(content, str):
            raise bad(f"{field_name}[{i}].content must be a string or a list of content parts")
    return messages


def _check_int(value: Any, name: str, low: int, high: int) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise bad(f"custom_inputs.simulate.{name} must be an integer from {low} to {high}")
    return value


def _check_simulate(value: Any) -> Simulation:
    if not isinstance(value, dict):
        raise bad("custom_inputs.simulate must be an object")
    unknown = sorted(set(value) - set(SIMULATE_KEYS))
    if unknown:
        raise bad(f"custom_inputs.simulate has unknown key(s): {', '.join(unknown)}")
    sim = Simulation()
    if "delay_ms" in value:
        sim.delay_ms = _check_int(value["delay_ms"], "delay_ms", 0, MAX_SIMULATED_DELAY_MS)
    if value.get("status") is not None:
        sim.status = value["status"]
        if not _is_int(sim.status) or not 400 <= sim.status <= 599:
            raise bad("custom_inputs.simulate.status must be an HTTP error status, 400..599")
    if value.get("malformed") is not None:
        sim.malformed = value["malformed"]
        if sim.malformed not in MALFORMED_KINDS:
            raise bad(f"custom_inputs.simulate.malformed must be one of {MALFORMED_KINDS}")
    if value.get("chunk_delay_ms") is not None:
        delay = value["chunk_delay_ms"]
        sim.chunk_delay_ms = _check_int(delay, "chunk_delay_ms", 0, MAX_CHUNK_DELAY_MS)
    if value.get("cut_after_chunks") is not None:
        cut = value["cut_after_chunks"]
        sim.cut_after_chunks = _check_int(cut, "cut_after_chunks", 0, MAX_CUT_AFTER_CHUNKS)
    if value.get("stream_error") is not None:
        message = value["stream_error"]
        if not isinstance(message, str) or not 0 < len(message) <= MAX_STREAM_ERROR_LENGTH:
            raise bad(
                "custom_inputs.simulate.stream_error must be a message of 1 to "
                f"{MAX_STREAM_ERROR_LENGTH} characters"
            )
        sim.stream_error = message
    return sim


def _optional_string(container: dict[str, Any], key: str, where: str) -> str | None:
    value = container.get(key)
    if value is not None and not isinstance(value, str):
        raise bad(f"{where}.{key} must be a string")
    return value or None


def apply_custom_inputs(request: ChatRequest, custom: Any) -> None:
    if custom is None:
        return
    if not isinstance(custom, dict):
        raise bad("`custom_inputs` must be an object")
    if "top_k" in custom:
        top_k = custom["top_k"]
        if not _is_int(top_k) or not 1 <= top_k <= MAX_TOP_K:
            raise bad(f"custom_inputs.top_k must be an integer from 1 to {MAX_TOP_K}")
        request.top_k = top_k
    if "style" in custom:
        if custom["style"] not in STYLES:
            raise bad(f"custom_inputs.style must be one of {', '.join(STYLES)}")
        request.style = custom["style"]
    if custom.get("simulate") is not None:
        request.simulate = _check_simulate(custom["simulate"])


def apply_databricks_options(request: ChatRequest, options: Any) -> None:
    if options is None:
        return
    if not isinstance(options, dict):
        raise bad("`databricks_options` must be an object")
    return_trace = options.get("return_trace", False)
    if not isinstance(return_trace, bool):
        raise bad("databricks_options.return_trace must be true or false")
    request.return_trace = return_trace
    conversation_id = _optional_string(options, "conversation_id", "databricks_options")
    request.conversation_id = conversation_id or request.conversation_id


def apply_context(request: ChatRequest, context: Any) -> None:
    """ChatAgent and ResponsesAgent `context` (mlflow.types.agent.ChatContext)."""
    if context is None:
        return
    if not isinstance(context, dict):
        raise bad("`context` must be an object with optional conversation_id and user_id")
    request.conversation_id = _optional_string(context, "conversation_id", "context")
    request.user_id = _optional_string(context, "user_id", "context")


# Feedback columns that the feedback model declares as strings; clients send them either as
# nested JSON or as JSON-encoded strings (protocol.md §4.2), so both are accepted.
_FEEDBACK_JSON_COLUMNS = {
    "source": dict,
    "text_assessments": list,
    "retrieval_assessments": list,
}


def parse_feedback_records(body: dict[str, Any]) -> list[dict[str, Any]]:
    records = body.get("dataframe_records")
    if not isinstance(records, list) or not records:
        raise bad('the body must be {"dataframe_records": [...]} with at least one record')
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise bad(f"dataframe_records[{i}] must be an object")
        request_id = record.get("request_id")
        if not isinstance(request_id, str) or not request_id.strip():
            raise bad(f"dataframe_records[{i}].request_id must be a non-empty string")
        for column, kind in _FEEDBACK_JSON_COLUMNS.items():
            value = record.get(column)
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    raise bad(f"dataframe_records[{i}].{column} is a string but not JSON") from None
            if value is not None and not isinstance(value, kind):
                expected = "an object" if kind is dict else "a list"
                raise bad(f"dataframe_records[{i}].{column} must be {expected} (or its JSON)")
    return records
