"""Apply a manifest (`reviewapp apply -f FILE`): create and update label schemas, deployments
and review sessions so they match it, through their own services, in ONE transaction: any
error and nothing is applied. `dry_run` computes the same changes and rolls them back;
`prune` also deletes what the file's sections no longer name (a section the file leaves out
is not touched).

Identity: a label schema by `name`, a deployment by `model_name@model_version` (`name` is its
display name), a review session by `name`. Errors are keyed by the file's field,
`deployments[1].query_endpoint`, which the CLI turns into a line.
"""

from dataclasses import dataclass, field
from typing import Any

import jsonschema
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from agents import services as agent_services
from agents.models import Deployment
from feedback.label_schema_services import (
    deployment_label_schemas_set,
    label_schema_delete,
    label_schema_save,
)
from feedback.models import LabelSchema
from manifests import selectors
from manifests.schema import MANIFEST_SCHEMA
from review import services as review_services
from review.models import ReviewSession
from reviewapp import roles

SECTIONS = ("label_schemas", "deployments", "review_sessions")
_KEYS = {
    "label_schemas": lambda item: item["name"],
    "deployments": lambda item: f"{item['model_name']}@{item['model_version']!s}",
    "review_sessions": lambda item: item["name"],
}


@dataclass
class Change:
    kind: str  # a section name
    key: str
    action: str  # create, update, delete
    fields: dict[str, list[Any]] = field(default_factory=dict)  # field: [before, after]

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def manifest_check(manifest: Any) -> None:
    """The manifest's shape against its JSON Schema; ValidationError({path: [why]})."""
    validator = jsonschema.Draft202012Validator(MANIFEST_SCHEMA)
    errors: dict[str, list[str]] = {}
    for error in validator.iter_errors(manifest):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        errors.setdefault(path.lstrip(".") or "non_field_errors", []).append(error.message)
    if errors:
        raise ValidationError(errors)
    for section in SECTIONS:
        seen: dict[str, int] = {}
        for index, item in enumerate(manifest.get(section, [])):
            key = _KEYS[section](item)
            if key in seen:
                raise ValidationError(
                    {f"{section}[{index}]": [f"{key} is also {section}[{seen[key]}]"]}
                )
            seen[key] = index


@transaction.atomic
def manifest_apply(
    *, user: AbstractBaseUser, manifest: Any, dry_run: bool = False, prune: bool = False
) -> list[Change]:
    """The changes made (or, with `dry_run`, that would be made). ValidationError({field:
    [why]}) and nothing changed when any part cannot be applied."""
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins may apply manifests.")
    manifest_check(manifest)
    before = selectors.manifest_export()
    errors: dict[str, list[str]] = {}
    for index, item in enumerate(manifest.get("label_schemas", [])):
        _step(errors, f"label_schemas[{index}]", _label_schema, item)
    for index, item in enumerate(manifest.get("deployments", [])):
        _step(errors, f"deployments[{index}]", _deployment, item)
    for index, item in enumerate(manifest.get("review_sessions", [])):
        _step(errors, f"review_sessions[{index}]", _session, item, user)
    if prune and not errors:
        _prune(manifest, errors)
    if errors:
        raise ValidationError(errors)
    changes = _diff(before, selectors.manifest_export())
    if dry_run:
        transaction.set_rollback(True)
    return changes


def _step(errors: dict, where: str, apply, *args) -> None:
    """One object in a savepoint of its own: its errors are kept under `where`."""
    try:
        with transaction.atomic():
            apply(*args)
    except ValidationError as exc:
        details = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
        for name, messages in details.items():
            key = where if name in ("", "__all__", "non_field_errors") else f"{where}.{name}"
            errors.setdefault(key, []).extend(messages)


def _label_schema(item: dict) -> None:
    label_schema_save(schema=LabelSchema.objects.filter(name=item["name"]).first(), data=item)


def _deployment(item: dict) -> None:
    fields = dict(item)
    label_schemas = fields.pop("label_schemas", None)
    fields["display_name"] = fields.pop("name", "")
    fields["model_version"] = str(fields["model_version"])
    if "allowed_users" in fields:
        fields["allowed_users"] = _named(
            get_user_model().objects, get_user_model().USERNAME_FIELD, fields["allowed_users"],
            "allowed_users",
        )  # fmt: skip
    if "allowed_groups" in fields:
        fields["allowed_groups"] = _named(
            Group.objects, "name", fields["allowed_groups"], "allowed_groups"
        )
    existing = Deployment.objects.filter(
        model_name=fields["model_name"], model_version=fields["model_version"]
    ).first()
    if existing is None:
        deployment = agent_services.deployment_create(**fields)
    else:
        deployment = agent_services.deployment_update(deployment=existing, **fields)
    if label_schemas is not None:
        deployment_label_schemas_set(deployment=deployment, names=label_schemas)


def _named(manager, key: str, names: list[str], field_name: str) -> list:
    found = {getattr(o, key): o for o in manager.filter(**{f"{key}__in": names})}
    missing = [name for name in names if name not in found]
    if missing:
        raise ValidationError({field_name: [f"No such name: {', '.join(missing)}."]})
    return [found[name] for name in names]


def _session(item: dict, user: AbstractBaseUser) -> None:
    data = dict(item)
    data["deployments"] = [_deployment_id(ref) for ref in data["deployments"]]
    same = list(ReviewSession.objects.filter(name=item["name"])[:2])
    if len(same) > 1:
        raise ValidationError({"name": ["Several review sessions have this name; rename one."]})
    review_services.session_save(user=user, data=data, session=same[0] if same else None)


def _deployment_id(ref: str) -> int:
    """A deployment named by its display name or model@version."""
    name, _, version = ref.rpartition("@")
    found = list(Deployment.objects.filter(display_name=ref)[:2])
    if not found and name:
        found = list(Deployment.objects.filter(model_name=name, model_version=version))
    if len(found) != 1:
        why = "names several deployments" if found else "is no deployment's name or model@version"
        raise ValidationError({"deployments": [f"{ref!r} {why}."]})
    return found[0].pk


def _prune(manifest: dict, errors: dict) -> None:
    """Delete what a section present in the file no longer names, sessions first (they use
    deployments and label schemas)."""
    if "review_sessions" in manifest:
        named = {item["name"] for item in manifest["review_sessions"]}
        ReviewSession.objects.exclude(name__in=named).delete()
    if "deployments" in manifest:
        named = {_KEYS["deployments"](item) for item in manifest["deployments"]}
        for deployment in Deployment.objects.all():
            if selectors.deployment_key(deployment) not in named:
                agent_services.deployment_delete(deployment=deployment)
    if "label_schemas" in manifest:
        named = {item["name"] for item in manifest["label_schemas"]}
        for schema in LabelSchema.objects.exclude(name__in=named):
            _step(errors, f"label_schemas ({schema.name})", lambda s=schema: label_schema_delete(
                schema=s))  # fmt: skip


def _diff(before: dict, after: dict) -> list[Change]:
    changes = []
    for section in SECTIONS:
        old = {_KEYS[section](item): item for item in before[section]}
        new = {_KEYS[section](item): item for item in after[section]}
        for key in sorted(set(old) | set(new)):
            if key not in new:
                changes.append(Change(section, key, "delete"))
            elif key not in old:
                changes.append(Change(section, key, "create", {f: [None, v] for f, v in
                                                               new[key].items()}))  # fmt: skip
            else:
                moved = {f: [old[key].get(f), v] for f, v in new[key].items()
                         if old[key].get(f) != v}  # fmt: skip
                if moved:
                    changes.append(Change(section, key, "update", moved))
    return changes
