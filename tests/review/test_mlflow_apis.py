"""The review session's MLflow API (import traces, mirror, dataset) against the suite's real
`mlflow server`, with traces logged by the MLflow library."""

import uuid

import pytest
from mlflow.genai import review_queues as mlflow_queues

from review import queue
from review.models import ReviewItem
from tests.review.mlflow_support import log_traces
from tests.review.sessions_support import make_reviewer, make_session

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db,
    pytest.mark.usefixtures("mlflow_client"),
]
BASE = "/api/v1/review-sessions/{pk}/mlflow/"


@pytest.fixture
def bot(agent_server_bot):
    return agent_server_bot


def test_an_admin_imports_mirrors_and_writes_a_dataset(
    api_client, admin_user, bot, django_user_model, mlflow_server
):
    bob = make_reviewer(django_user_model, "bob")
    turns = [
        {"question": "Why was I charged twice?", "answer": "A retry.", "topic": "billing"},
        {"question": "Where is my parcel?", "answer": "In Lisbon.", "topic": "shipping"},
    ]
    logged = log_traces(mlflow_server.url, f"api-{uuid.uuid4().hex[:8]}", turns)
    experiment_id = logged["experiment_id"]
    session, _ = make_session(
        admin_user, bot, [bob], turns=0, label_schemas=["answer_correct", "expected_response"]
    )
    url = BASE.format(pk=session.pk)
    api_client.force_authenticate(admin_user)

    response = api_client.post(
        url + "import-traces/",
        {
            "deployment": bot.pk,
            "experiment_id": experiment_id,
            "filter_string": "tags.topic = 'billing'",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json() == {"found": 1, "imported": 1, "added": 1, "skipped": 0}
    [item] = ReviewItem.objects.filter(session=session)
    assert item.turn.request == "Why was I charged twice?"

    queue.item_next(session=session, reviewer=bob)
    queue.item_label_save(
        item=item,
        reviewer=bob,
        text_assessment={
            "ratings": {"answer_correct": {"value": "negative"}},
            "suggested_output": "A retry charged you twice; the second charge is refunded.",
        },
    )
    response = api_client.post(url + "mirror/", {"experiment_id": experiment_id}, format="json")
    assert response.status_code == 200, response.content
    mirrored = response.json()
    assert (mirrored["items_attached"], mirrored["items_completed"]) == (1, 1)
    found = mlflow_queues.get_review_queue(queue_id=mirrored["queue_id"])
    assert found.name == f"{session.name} (#{session.pk})"

    response = api_client.post(
        url + "dataset/",
        {"experiment_id": experiment_id, "name": "billing expectations"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["records"] == 1


def test_reviewers_and_bad_bodies_are_refused(api_client, admin_user, bot, django_user_model):
    bob = make_reviewer(django_user_model, "bob")
    session, _ = make_session(admin_user, bot, [bob], turns=0)
    url = BASE.format(pk=session.pk)
    api_client.force_authenticate(bob)
    response = api_client.post(url + "mirror/", {"experiment_id": "1"}, format="json")
    assert response.status_code == 403
    api_client.force_authenticate(admin_user)
    response = api_client.post(url + "import-traces/", {"experiment_id": "1"}, format="json")
    assert response.status_code == 400 and "deployment" in response.json()
    response = api_client.post(
        BASE.format(pk=999999) + "mirror/", {"experiment_id": "1"}, format="json"
    )
    assert response.status_code == 404
    assert not ReviewItem.objects.exists()
