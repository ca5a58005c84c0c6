"""The manifest's JSON Schema: what `reviewapp apply -f FILE` accepts and `reviewapp export`
writes (served at /api/v1/manifest/schema/). Enumerations come from the models, so the schema
and the app cannot disagree. The schema checks shapes; the services then check values (a URL,
a model name, options that fit an input type) and report them by field as well."""

from agents.models import AgentSchema, AuthKind, EndpointKind
from agents.models.deployment import FEEDBACK_SINK_CHOICES
from feedback.models import InputType, LabelKind
from review.models import SessionState

MANIFEST_VERSION = 1


def _choices(choices) -> list[str]:
    return [value for value, _ in choices]


_TEXT = {"type": "string"}
_NAMES = {"type": "array", "items": {"type": "string"}}
_JSON_OBJECT = {"type": ["object", "null"]}

LABEL_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "title", "input_type"],
    "properties": {
        "name": _TEXT,
        "title": _TEXT,
        "instruction": _TEXT,
        "kind": {"enum": _choices(LabelKind.choices)},
        "input_type": {"enum": _choices(InputType.choices)},
        "options": {"type": ["array", "null"], "items": {"type": "string"}},
        "min_value": {"type": ["number", "null"]},
        "max_value": {"type": ["number", "null"]},
        "step": {"type": ["number", "null"]},
        "max_length": {"type": ["integer", "null"]},
        "max_count": {"type": ["integer", "null"]},
        "enable_comment": {"type": "boolean"},
        "required": {"type": "boolean"},
    },
}

DEPLOYMENT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "model_name", "model_version", "query_endpoint"],
    "properties": {
        "name": {**_TEXT, "description": "Its display name: how run files and sessions name it."},
        "model_name": _TEXT,
        "model_version": {"type": ["string", "integer"]},
        "endpoint_name": _TEXT,
        "served_entity_name": _TEXT,
        "query_endpoint": _TEXT,
        "endpoint_url": _TEXT,
        "endpoint_kind": {"enum": _choices(EndpointKind.choices)},
        "agent_schema": {"enum": _choices(AgentSchema.choices)},
        "streaming": {"type": "boolean"},
        "openai_model": _TEXT,
        "feedback_sink": {"enum": _choices(FEEDBACK_SINK_CHOICES)},
        "feedback_json_strings": {"type": "boolean"},
        "auth_kind": {"enum": _choices(AuthKind.choices)},
        "auth_env_var": {
            **_TEXT,
            "description": "The environment variable that holds the token: never the token.",
        },
        "databricks_profile": _TEXT,
        "databricks_host": _TEXT,
        "oauth_client_id": _TEXT,
        "request_timeout_s": {"type": "integer"},
        "default_custom_inputs": {"type": "object"},
        "custom_inputs_schema": _JSON_OBJECT,
        "reviewer_instructions": _TEXT,
        "enabled": {"type": "boolean"},
        "allowed_users": _NAMES,
        "allowed_groups": _NAMES,
        "label_schemas": {**_NAMES, "description": "The chat's questions, in order."},
    },
}

REVIEW_SESSION = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "deployments", "label_schemas"],
    "properties": {
        "name": _TEXT,
        "instructions": _TEXT,
        "deployments": {**_NAMES, "description": "Deployment names (their `name`)."},
        "label_schemas": _NAMES,
        "assigned_users": _NAMES,
        "assigned_groups": _NAMES,
        "reviewers_per_item": {"type": "integer"},
        "due_at": {"type": ["string", "null"], "format": "date-time"},
        "state": {"enum": _choices(SessionState.choices)},
        "saved_filter": _JSON_OBJECT,
    },
}

MANIFEST_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "/api/v1/manifest/schema/",
    "title": "Review App manifest",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "version": {"const": MANIFEST_VERSION},
        "label_schemas": {"type": "array", "items": LABEL_SCHEMA},
        "deployments": {"type": "array", "items": DEPLOYMENT},
        "review_sessions": {"type": "array", "items": REVIEW_SESSION},
    },
}
