"""The current state as a manifest (what `reviewapp export` writes): label schemas, deployments
with their chat's label schemas and who may use them, review sessions. Secrets are never
stored, so never exported: a deployment names the environment variable holding its token."""

from typing import Any

from agents.models import Deployment
from feedback.models import LabelSchema
from manifests.schema import DEPLOYMENT, LABEL_SCHEMA, MANIFEST_VERSION, REVIEW_SESSION
from review.models import ReviewSession

DEPLOYMENT_FIELDS = [f for f in DEPLOYMENT["properties"] if f != "name"]
LABEL_SCHEMA_FIELDS = list(LABEL_SCHEMA["properties"])
SESSION_FIELDS = list(REVIEW_SESSION["properties"])
_RELATIONS = ("allowed_users", "allowed_groups", "label_schemas")


def deployment_reference(deployment: Deployment) -> str:
    """How a manifest names a deployment: its display name, else model@version."""
    return deployment.display_name or f"{deployment.model_name}@{deployment.model_version}"


def deployment_key(deployment: Deployment) -> str:
    return f"{deployment.model_name}@{deployment.model_version}"


def label_schema_dict(schema: LabelSchema) -> dict[str, Any]:
    return {field: getattr(schema, field) for field in LABEL_SCHEMA_FIELDS}


def deployment_dict(deployment: Deployment) -> dict[str, Any]:
    out: dict[str, Any] = {"name": deployment.display_name} if deployment.display_name else {}
    for field in DEPLOYMENT_FIELDS:
        if field not in _RELATIONS:
            out[field] = getattr(deployment, field)
    out["allowed_users"] = sorted(u.get_username() for u in deployment.allowed_users.all())
    out["allowed_groups"] = sorted(g.name for g in deployment.allowed_groups.all())
    out["label_schemas"] = [
        link.schema.name
        for link in deployment.label_schema_links.select_related("schema").order_by("order")
    ]
    return out


def session_dict(session: ReviewSession) -> dict[str, Any]:
    return {
        "name": session.name,
        "instructions": session.instructions,
        "deployments": sorted(deployment_reference(d) for d in session.deployments.all()),
        "label_schemas": [
            link.schema.name
            for link in session.schema_links.select_related("schema").order_by("order")
        ],
        "assigned_users": sorted(u.get_username() for u in session.assigned_users.all()),
        "assigned_groups": sorted(g.name for g in session.assigned_groups.all()),
        "reviewers_per_item": session.reviewers_per_item,
        "due_at": session.due_at.isoformat() if session.due_at else None,
        "state": session.state,
        "saved_filter": session.saved_filter,
    }


def manifest_export() -> dict[str, Any]:
    return {
        "version": MANIFEST_VERSION,
        "label_schemas": [label_schema_dict(s) for s in LabelSchema.objects.order_by("name")],
        "deployments": [
            deployment_dict(d) for d in Deployment.objects.order_by("model_name", "model_version")
        ],
        "review_sessions": [session_dict(s) for s in ReviewSession.objects.order_by("name", "pk")],
    }
