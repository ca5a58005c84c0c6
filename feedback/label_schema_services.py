"""Writes for label schemas: create, change and delete them (refused once they carry labels),
and set the ones a deployment's chat asks."""

from django.core.exceptions import ValidationError
from django.db import transaction

from feedback import selectors
from feedback.label_values import label_schemas_for
from feedback.models import LABEL_SCHEMA_FIELDS, DeploymentLabelSchema, LabelSchema


def label_schema_delete(*, schema: LabelSchema) -> None:
    """Delete a label schema nothing uses; one with labels, or in a deployment's or a review
    session's set, is refused (its labels would lose what they answer)."""
    if selectors.label_schema_in_use(schema):
        raise ValidationError(
            f"The label schema {schema.name} has labels or is in use; it cannot be deleted."
        )
    schema.delete()


# What a schema's existing labels depend on: changing them would make those labels wrong.
_FIXED_ONCE_LABELLED = ("name", "kind", "input_type")


@transaction.atomic
def label_schema_save(*, schema: LabelSchema | None = None, data: dict) -> LabelSchema:
    """Create a label schema, or update `schema` with `data` (only the fields given). A schema
    that has labels keeps its name, kind and input type."""
    unknown = sorted(set(data) - set(LABEL_SCHEMA_FIELDS))
    if unknown:
        raise ValidationError({"non_field_errors": [f"Unknown field(s): {', '.join(unknown)}."]})
    if schema is not None and selectors.label_schema_has_labels(schema):
        changed = [f for f in _FIXED_ONCE_LABELLED if f in data and data[f] != getattr(schema, f)]
        if changed:
            raise ValidationError(
                {f: ["This label schema has labels; this cannot change."] for f in changed}
            )
    schema = schema or LabelSchema()
    for field, value in data.items():
        setattr(schema, field, value)
    schema.full_clean()
    schema.save()
    return schema


@transaction.atomic
def deployment_label_schemas_set(*, deployment, names: list[str]) -> list[LabelSchema]:
    """The label schemas the deployment's chat asks, in this order (none: the default thumbs
    question). Unknown or repeated names are refused and nothing changes."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValidationError({"label_schemas": ["Send a list of label schema names."]})
    repeated = sorted({n for n in names if names.count(n) > 1})
    found = {s.name: s for s in LabelSchema.objects.filter(name__in=names)}
    missing = [n for n in names if n not in found]
    if repeated or missing:
        problems = [f"No label schema named {n!r}." for n in missing]
        problems += [f"{n} is named more than once." for n in repeated]
        raise ValidationError({"label_schemas": problems})
    DeploymentLabelSchema.objects.filter(deployment=deployment).delete()
    DeploymentLabelSchema.objects.bulk_create(
        DeploymentLabelSchema(deployment=deployment, schema=found[n], order=i)
        for i, n in enumerate(names)
    )
    deployment._label_schemas_cache = None
    return label_schemas_for(deployment)
