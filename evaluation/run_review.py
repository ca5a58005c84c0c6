""" "Review this run": a review session of a run's answers, all of them or only those where
the evaluators disagree, made through the review sessions' own services."""

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from evaluation.models import RowStatus, Run, RunKind
from review import services as review_services
from review.models import ReviewSession

ALL_ROWS, DISAGREEMENTS = "all", "disagreements"
# Two scores on a 0-1 scale (booleans as 0/1) this far apart are a disagreement.
DISAGREEMENT_GAP = 0.5


def _unit_scores(scores: dict) -> list[float]:
    """The row's scores on a 0-1 scale: booleans and numbers within [0, 1] (not latency,
    tokens or counts, which have no verdict to disagree with)."""
    out = []
    for result in scores.values():
        value = result.get("value")
        if isinstance(value, bool) or (isinstance(value, int | float) and 0 <= value <= 1):
            out.append(float(value))
    return out


def disagrees(scores: dict) -> bool:
    values = _unit_scores(scores)
    return len(values) >= 2 and max(values) - min(values) >= DISAGREEMENT_GAP


def run_review_session(
    *, user: AbstractBaseUser, run: Run, name: str, label_schemas: list[str], rows: str
) -> ReviewSession:
    """A new session of the run's answered rows (`rows` ALL_ROWS or DISAGREEMENTS, the latter
    for evaluation runs), asking `label_schemas`. ValidationError and nothing saved when it
    cannot be made (no such rows, bad names); PermissionDenied for non-admins."""
    if rows not in (ALL_ROWS, DISAGREEMENTS):
        raise ValidationError({"rows": ["Choose all rows or the rows where evaluators disagree."]})
    if rows == DISAGREEMENTS and run.kind != RunKind.EVALUATION:
        raise ValidationError({"rows": ["Only an evaluation run has evaluators to disagree."]})
    done = run.rows.filter(status=RowStatus.DONE, turn__isnull=False, turn__error="")
    picked = [
        turn_id
        for turn_id, scores in done.order_by("position").values_list("turn_id", "scores")
        if rows == ALL_ROWS or disagrees(scores)
    ]
    if not picked:
        raise ValidationError({"rows": ["No answered row of this run matches."]})
    deployment_id = run.deployment_id or run.base_run.deployment_id
    with transaction.atomic():
        session = review_services.session_save(
            user=user,
            data={
                "name": name or f"Review of run {run.name}",
                "deployments": [deployment_id],
                "label_schemas": label_schemas,
                "instructions": f"The answers of run `{run.name}`"
                + (" where its evaluators disagree." if rows == DISAGREEMENTS else "."),
            },
        )
        review_services.items_add(session=session, user=user, turn_ids=picked)
    return session
