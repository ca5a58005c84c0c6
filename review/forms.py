"""The label form of a session's item, and the admin's settle form: one fieldset per label
schema. Parsed from the POST into a text assessment (queue.item_label_save / item_settle check
it), and shown again either from a saved rating or, after a refused save, exactly as posted."""

from dataclasses import dataclass, field

from django.http import QueryDict

from feedback.label_values import label_given, value_from_form
from feedback.models import EXPECTED_RESPONSE, InputType, LabelSchema

COMMENT_FIELD = "free_text_comment"
THUMBS_CHOICES = (("positive", "Yes"), ("negative", "No"))
KEYED_OPTIONS = 9  # keys 1-9 pick an option


def value_field(schema: LabelSchema) -> str:
    return f"q_{schema.name}"


def rationale_field(schema: LabelSchema) -> str:
    return f"why_{schema.name}"


def _has_rationale(schema: LabelSchema) -> bool:
    # The better answer is the Databricks record's suggested_output: it has no rationale.
    return schema.enable_comment and schema.name != EXPECTED_RESPONSE


@dataclass
class SchemaField:
    """One schema's fieldset: what it shows checked or typed, and its errors."""

    schema: LabelSchema
    value: str = ""  # one value, or a text list's texts one per line
    values: list[str] = field(default_factory=list)  # a categorical list's options
    rationale: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return value_field(self.schema)

    @property
    def rationale_name(self) -> str:
        return rationale_field(self.schema)

    @property
    def has_rationale(self) -> bool:
        return _has_rationale(self.schema)

    @property
    def is_better_answer(self) -> bool:
        return self.schema.name == EXPECTED_RESPONSE

    @property
    def choices(self) -> list[dict]:
        """Radios or checkboxes: value, label, checked, and the key that picks it (1-9)."""
        kind = self.schema.input_type
        if kind == InputType.THUMBS:
            pairs = THUMBS_CHOICES
        elif kind in (InputType.CATEGORICAL, InputType.CATEGORICAL_LIST):
            pairs = [(o, o) for o in self.schema.options]
        else:
            return []
        chosen = set(self.values) if kind == InputType.CATEGORICAL_LIST else {self.value}
        return [
            {
                "value": value,
                "label": label,
                "checked": value in chosen,
                "key": str(n) if n <= KEYED_OPTIONS else "",
                "n": n,
            }
            for n, (value, label) in enumerate(pairs, start=1)
        ]


def label_from_post(schemas: list[LabelSchema], data: QueryDict) -> dict:
    """The posted form as a text assessment; empty answers are left out (so a required one is
    reported missing). A comment without an answer is kept, so the check says the answer is
    missing instead of dropping the comment unseen."""
    text: dict = {}
    for schema in schemas:
        value = value_from_form(data, value_field(schema), schema)
        rationale = data.get(rationale_field(schema), "").strip() if _has_rationale(schema) else ""
        if value in ("", []) and not rationale:
            continue
        entry = {"value": value, **({"rationale": rationale} if rationale else {})}
        text.setdefault(schema.text_field, {})[schema.name] = entry
    comment = data.get(COMMENT_FIELD, "")
    if comment.strip():
        text[COMMENT_FIELD] = comment
    return text


def fields_from_label(schemas: list[LabelSchema], text: dict | None) -> list[SchemaField]:
    """The fieldsets showing a saved text assessment (None: an empty form)."""
    text = text or {}
    fields = []
    for schema in schemas:
        given = label_given(text, schema)
        rationale = text.get(schema.text_field, {}).get(schema.name, {}).get("rationale", "")
        if isinstance(given, list):
            shown = SchemaField(schema, value="\n".join(given), values=list(given))
        else:
            shown = SchemaField(schema, value="" if given is None else str(given))
        shown.rationale = rationale
        fields.append(shown)
    return fields


def fields_from_post(schemas: list[LabelSchema], data: QueryDict) -> list[SchemaField]:
    """The fieldsets exactly as posted: nothing typed is lost when a save is refused."""
    return [
        SchemaField(
            schema,
            value=data.get(value_field(schema), ""),
            values=data.getlist(value_field(schema)),
            rationale=data.get(rationale_field(schema), ""),
        )
        for schema in schemas
    ]


def errors_in_words(messages: list[str], fields: list[SchemaField]) -> list[str]:
    """The check's messages with each schema named by its title instead of `ratings.<name>`;
    a message about one schema is also attached to its fieldset."""
    by_key = {}
    for shown in fields:
        schema = shown.schema
        by_key[f"{schema.text_field}.{schema.name}"] = shown
    by_name = {shown.schema.name: shown for shown in fields}
    out = []
    for message in messages:
        if message.startswith("Required: "):
            names = message.removeprefix("Required: ").rstrip(".").split(", ")
            for name in names:
                if name in by_name:
                    by_name[name].errors.append("An answer is required.")
            titles = [f"“{by_name[n].schema.title}”" if n in by_name else n for n in names]
            out.append(f"Answer {', '.join(titles)}: required.")
            continue
        for key, shown in by_key.items():
            if message.startswith(key + ":") or message.startswith(key + "."):
                said = message[len(key) :].lstrip(":. ")
                shown.errors.append(said[:1].upper() + said[1:])
                message = f"“{shown.schema.title}”: {said}"
                break
        out.append(message)
    return out
