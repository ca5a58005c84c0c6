"""A review session's agreed expectations saved as a dataset version: the question asked, the
better answer as `expected_response` and each expectation schema's value; contested values left
out; from the API and the session page; admins only."""

import pytest

from evaluation.models import DatasetRow
from feedback.models import LabelSchema
from review import queue
from review.models import ReviewItem
from tests.review.sessions_support import make_reviewer, make_session

pytestmark = pytest.mark.django_db


def label(item, reviewer, **text):
    return queue.item_label_save(
        item=item,
        reviewer=reviewer,
        text_assessment={"ratings": {"answer_correct": {"value": "positive"}}, **text},
    )


def test_a_sessions_expectations_become_a_dataset_version(
    api_client, client, admin_user, reviewer, deployment_factory, django_user_model
):
    LabelSchema.objects.get_or_create(name="expected_facts", defaults={
        "title": "Facts?", "kind": "expectation", "input_type": "text_list"})  # fmt: skip
    bob = make_reviewer(django_user_model, "bob")
    session, turns = make_session(admin_user, deployment_factory(), [reviewer, bob], per_item=2,
                                  label_schemas=["answer_correct", "expected_facts",
                                                 "expected_response"])  # fmt: skip
    agreed, contested, _ = ReviewItem.objects.filter(session=session).order_by("pk")
    for who in (reviewer, bob):
        label(agreed, who, expectations={"expected_facts": {"value": ["a", "b"]}},
              suggested_output="A better answer.")  # fmt: skip
    label(contested, reviewer, expectations={"expected_facts": {"value": ["a"]}})
    label(contested, bob, expectations={"expected_facts": {"value": ["b"]}})

    api_client.force_authenticate(reviewer)
    url = "/api/v1/datasets/golden/versions/from-session/"
    assert api_client.post(url, {"session": session.pk}, format="json").status_code == 403
    api_client.force_authenticate(admin_user)
    made = api_client.post(url, {"session": session.pk}, format="json")
    assert made.status_code == 201, made.json()
    assert made.json()["version"] == 1 and made.json()["rows"] == 1
    rows = [row.data for row in DatasetRow.objects.order_by("position")]
    assert rows == [{
        "question": turns[0].request, "expected_facts": ["a", "b"],
        "expected_response": "A better answer.", "request_id": turns[0].databricks_request_id,
    }]  # fmt: skip
    assert api_client.post(url, {"session": 987654}, format="json").status_code == 404

    client.force_login(admin_user)
    page = client.post(f"/review/sessions/{session.pk}/dataset-version/", {"name": "golden"},
                       follow=True)  # fmt: skip
    assert "Saved 1 row(s) as dataset golden@2." in page.content.decode()
    empty, _ = make_session(admin_user, deployment_factory(model_name="main.x.y"), [reviewer])
    refused = api_client.post(url, {"session": empty.pk}, format="json")
    assert refused.status_code == 400 and "No item of this session has expectations" in str(
        refused.json())  # fmt: skip
