"""What each label schema asks and which values fit it: the deployment's set (or the default
question), each input type's check of a value, and where a text assessment keeps a schema's
value. feedback.validation checks whole ratings with these."""

import math
import re
from typing import Any

from django.db.models import F, FilteredRelation, Q

from feedback.models import EXPECTED_RESPONSE, InputType, LabelSchema

THUMBS_VALUES = ("positive", "negative")
MAX_TEXT_CHARS = 20_000
_NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")


# Asked when a deployment has no label schemas of its own (the Databricks Review App's question).
DEFAULT_SCHEMA = {
    "name": "answer_correct",
    "title": "Is this response correct for your question?",
    "input_type": InputType.THUMBS,
}


def label_schemas_for(deployment) -> list[LabelSchema]:
    """The deployment's label schemas in order; with none set up, the default thumbs one (the
    stored `answer_correct` schema when there is one, so an admin's wording is used). Kept on
    the deployment object: `label_schemas_of_many` fills it for a page's deployments at once."""
    cached = getattr(deployment, "_label_schemas_cache", None)
    if cached is None:
        label_schemas_of_many([deployment])
        cached = deployment._label_schemas_cache
    return cached


def label_schemas_of_many(deployments) -> None:
    """Each deployment's label schemas, read in one query whatever their number (a page
    listing every deployment asks them all): each schema once per deployment of these whose
    set holds it, and the stored default schema (once, with no deployment, when in no set)."""
    deployments = list(deployments)
    rows = (
        LabelSchema.objects.annotate(
            link=FilteredRelation(
                "deployment_links", condition=Q(deployment_links__deployment__in=deployments)
            )
        )
        .filter(Q(link__isnull=False) | Q(name=DEFAULT_SCHEMA["name"]))
        .annotate(set_of=F("link__deployment_id"))
        .order_by("link__order", "link__pk")
    )
    by_deployment: dict[int, list[LabelSchema]] = {}
    default = None
    for schema in rows:
        if schema.set_of is not None:
            by_deployment.setdefault(schema.set_of, []).append(schema)
        if schema.name == DEFAULT_SCHEMA["name"]:
            default = schema
    for deployment in deployments:
        deployment._label_schemas_cache = label_set(by_deployment.get(deployment.pk, []), default)


def label_set(own: list[LabelSchema], stored_default: LabelSchema | None) -> list[LabelSchema]:
    """What a deployment asks: its own schemas in order; with none, the default question (the
    stored `answer_correct` schema when there is one)."""
    return own or [stored_default or LabelSchema(**DEFAULT_SCHEMA)]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def clean_value(schema: LabelSchema, value: Any) -> Any:
    """The value as it is stored and sent (a string; a list of strings for the list types), or
    ValueError saying why not."""
    kind = schema.input_type
    if kind == InputType.THUMBS:
        if value not in THUMBS_VALUES:
            raise ValueError('must be "positive" or "negative"')
        return value
    if kind == InputType.CATEGORICAL:
        if not isinstance(value, str) or value not in schema.options:
            raise ValueError(f"must be one of {', '.join(map(repr, schema.options))}")
        return value
    if kind == InputType.CATEGORICAL_LIST:
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty list of options")
        wrong = [v for v in value if not isinstance(v, str) or v not in schema.options]
        if wrong:
            raise ValueError(f"may hold only {', '.join(map(repr, schema.options))}")
        if len(set(value)) != len(value):
            raise ValueError("names an option twice")
        return [o for o in schema.options if o in value]  # in the schema's order
    if kind == InputType.NUMERIC:
        return _clean_number(schema, value)
    if kind == InputType.TEXT_LIST:
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty list of texts")
        if schema.max_count and len(value) > schema.max_count:
            raise ValueError(f"has {len(value)} texts; at most {schema.max_count}")
        return [_clean_text(schema, text, f"item {i}") for i, text in enumerate(value)]
    return _clean_text(schema, value, "")


def _clean_text(schema: LabelSchema, value: Any, which: str) -> str:
    prefix = f"{which} " if which else ""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{prefix}must be a non-empty text".strip())
    limit = min(schema.max_length or MAX_TEXT_CHARS, MAX_TEXT_CHARS)
    if len(value) > limit:
        raise ValueError(f"{prefix}is longer than {limit:,} characters".strip())
    return value


def _clean_number(schema: LabelSchema, value: Any) -> str:
    number = value
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value):
            raise ValueError("must be a number")
        number = float(value)
    if not is_number(number):
        raise ValueError("must be a number")
    if not schema.min_value <= number <= schema.max_value:
        raise ValueError(f"must be between {schema.min_value:g} and {schema.max_value:g}")
    if schema.step:
        steps = (number - schema.min_value) / schema.step
        if abs(steps - round(steps)) > 1e-9 * max(1.0, abs(steps)):
            raise ValueError(f"must be {schema.min_value:g} plus a multiple of {schema.step:g}")
    number = float(number)
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def label_given(text_assessment: dict, schema: LabelSchema) -> Any:
    """The value a text assessment gives a schema, or None."""
    if schema.name == EXPECTED_RESPONSE:
        return text_assessment.get("suggested_output")
    return text_assessment.get(schema.text_field, {}).get(schema.name, {}).get("value")


def value_from_form(data, field: str, schema: LabelSchema):
    """A schema's answer as a form posts it (a QueryDict): checkboxes for any-of, a line per
    text of a text list, else one field."""
    if schema.input_type == InputType.CATEGORICAL_LIST:
        return data.getlist(field)
    if schema.input_type == InputType.TEXT_LIST:
        return [line.strip() for line in data.get(field, "").splitlines() if line.strip()]
    return data.get(field, "").strip()
