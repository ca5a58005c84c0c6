"""A review session's expectations saved as a dataset version (issue 14 item 2): one row per
item with agreed expectations: the question asked, the better answer as `expected_response`,
and each expectation label schema's value under its name (`expected_facts`, `guidelines`, ...).
The rows are the ones the session's MLflow evaluation dataset gets (review.mlflow_dataset), and
go through the same upload checks as a file."""

import io
import json

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError

from agents.models import RequestLog
from evaluation import datasets
from review import services as review_services
from review.mlflow_dataset import session_expectation_records
from review.models import ReviewSession


def session_dataset_version(
    *, session: ReviewSession, user: AbstractBaseUser, name: str
) -> datasets.Upload:
    """The dataset `name`'s next version, from the session's expectations. Items whose
    reviewers disagree on a value leave that value out (as in the MLflow dataset)."""
    review_services.check_can_manage(user)
    records, _, _ = session_expectation_records(session)
    if not records:
        raise ValidationError(
            "No item of this session has expectations yet (a better answer, or a label of an "
            "expectation schema); nothing was saved."
        )
    ids = [record["tags"]["review_app.request_id"] for record in records]
    questions = dict(
        RequestLog.objects.filter(databricks_request_id__in=ids).values_list(
            "databricks_request_id", "request"
        )
    )
    lines = [
        json.dumps(
            {
                "question": questions.get(record["tags"]["review_app.request_id"], ""),
                **record["expectations"],
                "request_id": record["tags"]["review_app.request_id"],
            }
        )
        for record in records
    ]
    body = io.BytesIO("\n".join(lines).encode())
    return datasets.dataset_upload(
        name=name, file=body, file_name=f"session-{session.pk}.jsonl", user=user
    )
