"""Parsing and checking request bodies; every failure is a 400 ApiError saying what is wrong.

Checks are strict where a lenient server would hide a client's bug (a `top_k` of "3", a
`return_trace` of "yes"), and lenient where real agents are (unknown `custom_inputs` keys and
OpenAI parameters such as `temperature` are accepted and ignored).
"""

import json
from dataclasses import dataclass, field
from typing import Any

from demo_agent.errors import ApiError

STYLES = ("concise", "detailed", "bullets")
DEFAULT_TOP_K = 3
MAX_TOP_K = 10
ROLES = ("system", "developer", "user", "assistant", "tool")
MALFORMED_KINDS = ("not_json", "wrong_shape")
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


@dataclass
class Simulation:
    """`custom_inputs.simulate`: make this one turn slow or broken, for other tests."""

    delay_ms: int = 0
    status: int | None = None
    malformed: str | None = None


@dataclass
class ChatRequest:
    body: dict[str, Any]  # as received: the root span's inputs
    messages: list[dict[str, Any]]
    question: str  # text of the last user message: what the retriever searches for
    top_k: int = DEFAULT_TOP_K
    style: str = "concise"
    return_trace: bool = False
    conversation_id: str | None = None
    simulate: Simulation = field(default_factory=Simulation)


def message_text(content: Any) -> str:
    """Text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p.get("text"), str))
    return ""


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise bad("`messages` must be a non-empty list of {role, content} objects")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad(f"messages[{i}] must be an object with `role` and `content`")
        if message.get("role") not in ROLES:
            raise bad(f"messages[{i}].role must be one of {', '.join(ROLES)}")
        content = message.get("content")
        if content is None and message.get("tool_calls"):
            continue  # an assistant turn that only calls tools
        if isinstance(content, list):
            if not all(isinstance(p, dict) for p in content):
                raise bad(f"messages[{i}].content parts must be objects")
        elif not isinstance(content, str):
            raise bad(f"messages[{i}].content must be a string or a list of content parts")
    return messages


def _check_simulate(value: Any) -> Simulation:
    if not isinstance(value, dict):
        raise bad("custom_inputs.simulate must be an object")
    unknown = sorted(set(value) - {"delay_ms", "status", "malformed"})
    if unknown:
        raise bad(f"custom_inputs.simulate has unknown key(s): {', '.join(unknown)}")
    sim = Simulation()
    if "delay_ms" in value:
        sim.delay_ms = value["delay_ms"]
        if not _is_int(sim.delay_ms) or not 0 <= sim.delay_ms <= MAX_SIMULATED_DELAY_MS:
            raise bad(f"custom_inputs.simulate.delay_ms must be an int 0..{MAX_SIMULATED_DELAY_MS}")
    if value.get("status") is not None:
        sim.status = value["status"]
        if not _is_int(sim.status) or not 400 <= sim.status <= 599:
            raise bad("custom_inputs.simulate.status must be an HTTP error status, 400..599")
    if value.get("malformed") is not None:
        sim.malformed = value["malformed"]
        if sim.malformed not in MALFORMED_KINDS:
            raise bad(f"custom_inputs.simulate.malformed must be one of {MALFORMED_KINDS}")
    return sim


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    if body.get("stream") is True:
        raise bad("streaming is not supported by this endpoint yet")
    messages = _check_messages(body.get("messages"))
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        raise bad("`messages` must contain at least one message with role `user`")
    request = ChatRequest(body=body, messages=messages, question=message_text(users[-1]["content"]))

    custom = body.get("custom_inputs")
    if custom is not None:
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

    options = body.get("databricks_options")
    if options is not None:
        if not isinstance(options, dict):
            raise bad("`databricks_options` must be an object")
        return_trace = options.get("return_trace", False)
        if not isinstance(return_trace, bool):
            raise bad("databricks_options.return_trace must be true or false")
        request.return_trace = return_trace
        conversation_id = options.get("conversation_id")
        if conversation_id is not None and not isinstance(conversation_id, str):
            raise bad("databricks_options.conversation_id must be a string")
        request.conversation_id = conversation_id or None
    return request


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
