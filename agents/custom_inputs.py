"""custom_inputs checks, shared by the editor (while typing), the chat form and the API.

Rules: a JSON object, at most 64 KB, nested at most JSON_MAX_DEPTH levels, valid against the
deployment's JSON Schema when it has one.
Errors say where: line and column for syntax, the path for schema errors.
"""

import json
from typing import Any

from django.core.exceptions import ValidationError

from agents.models import Deployment
from agents.validators import MAX_CUSTOM_INPUTS_BYTES, schema_mismatch
from reviewapp import jsonlimits


def parse_custom_inputs_text(text: str) -> Any:
    if len(text.encode()) > MAX_CUSTOM_INPUTS_BYTES:
        raise ValidationError(
            f"custom_inputs is {len(text.encode())} bytes; at most {MAX_CUSTOM_INPUTS_BYTES} "
            "are allowed."
        )
    if not text.strip():
        return {}
    try:
        return jsonlimits.loads(text)
    except jsonlimits.JSONTooDeep as exc:
        raise ValidationError(f"custom_inputs is {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"Line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None


def check_custom_inputs(deployment: Deployment, value: Any) -> dict:
    """The value if it is acceptable for this deployment; ValidationError saying why if not."""
    if not isinstance(value, dict):
        raise ValidationError('custom_inputs must be a JSON object, like {"top_k": 3}.')
    size = len(json.dumps(value).encode())
    if size > MAX_CUSTOM_INPUTS_BYTES:
        raise ValidationError(
            f"custom_inputs is {size} bytes; at most {MAX_CUSTOM_INPUTS_BYTES} are allowed."
        )
    schema = deployment.custom_inputs_schema
    if isinstance(schema, dict) and schema:
        mismatch = schema_mismatch(schema, value)
        if mismatch is not None:
            raise ValidationError(mismatch)
    return value


def check_custom_inputs_text(deployment: Deployment, text: str) -> dict:
    return check_custom_inputs(deployment, parse_custom_inputs_text(text))
