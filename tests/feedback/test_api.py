"""The assessments API: rate a turn, read a rating with its delivery, list assessment logs."""

import json

import pytest

from feedback.models import Delivery, Rating
from tests.feedback.conftest import chat_turn, retriever_span_id

pytestmark = pytest.mark.django_db


def post(client, turn, body, **kwargs):
    return client.post(
        f"/api/v1/requests/{turn.databricks_request_id}/assessments/",
        data=json.dumps(body) if not isinstance(body, str) else body,
        content_type="application/json",
        **kwargs,
    )


def test_a_reviewer_rates_and_gets_201_with_the_delivery(api_client, turn, reviewer):
    api_client.force_authenticate(reviewer)
    span_id = retriever_span_id(turn)
    response = post(
        api_client,
        turn,
        {
            "text_assessments": [
                {"ratings": {"answer_correct": {"value": "positive", "rationale": "Cites docs"}}}
            ],
            "retrieval_assessments": [
                {
                    "position": 0,
                    "step_id": span_id,
                    "ratings": {"chunk_relevance": {"value": "positive"}},
                }
            ],
        },
    )
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["delivery"]["status"] == "pending"
    assert data["source"] == {"id": reviewer.email, "type": "human"}
    assert data["request_id"] == turn.databricks_request_id
    rating = Rating.objects.get(pk=data["id"])
    assert rating.text_assessment["ratings"]["answer_correct"]["rationale"] == "Cites docs"

    detail = api_client.get(f"/api/v1/assessments/{data['id']}/").json()
    assert detail["delivery"]["attempt_log"] == []
    assert detail["retrieval_assessments"][0]["step_id"] == span_id


def test_the_source_comes_from_the_signed_in_user_never_the_body(api_client, turn, reviewer):
    api_client.force_authenticate(reviewer)
    response = post(
        api_client,
        turn,
        {
            "source": {"id": "ceo@example.com", "type": "human"},
            "text_assessments": [{"ratings": {"answer_correct": {"value": "negative"}}}],
        },
    )
    assert response.status_code == 400
    assert "source" in response.json()
    assert not Rating.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text_assessments": [{"ratings": {"nope": {"value": "positive"}}}]}, "text_assessments"),
        (
            {
                "retrieval_assessments": [
                    {"position": 99, "ratings": {"chunk_relevance": {"value": "positive"}}}
                ]
            },
            "retrieval_assessments",
        ),
        ({}, "non_field_errors"),
        ({"text_assessments": "positive"}, "text_assessments"),
        ([1, 2], "non_field_errors"),
    ],
)
def test_invalid_ratings_get_400_and_nothing_is_saved(api_client, turn, reviewer, body, field):
    api_client.force_authenticate(reviewer)
    response = post(api_client, turn, body)
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not Rating.objects.exists() and not Delivery.objects.exists()


def test_malformed_json_gets_400(api_client, turn, reviewer):
    api_client.force_authenticate(reviewer)
    response = post(api_client, turn, '{"text_assessments": [')
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert not Rating.objects.exists()


def test_an_oversized_body_is_refused(api_client, turn, reviewer):
    api_client.force_authenticate(reviewer)
    comment = "x" * 3_000_000
    body = {"text_assessments": [{"free_text_comment": comment}]}
    response = post(api_client, turn, body)
    assert response.status_code == 413
    assert "larger than 2,621,440 bytes" in response.json()["detail"]
    assert not Rating.objects.exists()


def test_who_may_rate(api_client, demo_deployment, stakeholder, reviewer, stranger):
    turn = chat_turn(demo_deployment, stakeholder)
    body = {"text_assessments": [{"ratings": {"answer_correct": {"value": "negative"}}}]}
    assert post(api_client, turn, body).status_code == 401
    api_client.force_authenticate(stakeholder)
    assert post(api_client, turn, body).status_code == 403
    api_client.force_authenticate(stranger)
    assert post(api_client, turn, body).status_code == 403
    api_client.force_authenticate(reviewer)
    unknown = api_client.post("/api/v1/requests/no-such-request/assessments/", body, format="json")
    assert unknown.status_code == 404
    assert not Rating.objects.exists()


def test_the_list_is_in_the_assessment_log_schema(api_client, turn, reviewer, stakeholder):
    api_client.force_authenticate(reviewer)
    span_id = retriever_span_id(turn)
    post(
        api_client,
        turn,
        {
            "text_assessments": [
                {
                    "ratings": {"answer_correct": {"value": "negative"}},
                    "suggested_output": "Say what a span is.",
                }
            ],
            "retrieval_assessments": [
                {"position": 2, "step_id": span_id, "free_text_comment": "Outdated"}
            ],
        },
    )
    page = api_client.get(
        f"/api/v1/assessments/?deployment={turn.deployment_id}&status=pending"
    ).json()
    text_row, doc_row = page["results"]
    for row in (text_row, doc_row):
        assert {
            "request_id",
            "step_id",
            "source",
            "timestamp",
            "text_assessment",
            "retrieval_assessment",
        } <= set(row)
        assert row["request_id"] == turn.databricks_request_id
        assert row["source"] == {"type": "human", "id": reviewer.email, "tags": {}}
    assert text_row["text_assessment"]["suggested_output"] == "Say what a span is."
    assert text_row["retrieval_assessment"] is None
    assert doc_row["step_id"] == span_id
    assert doc_row["retrieval_assessment"]["position"] == 2
    assert doc_row["retrieval_assessment"]["free_text_comment"] == "Outdated"
    assert api_client.get("/api/v1/assessments/?status=sent").json()["results"] == []
    assert api_client.get("/api/v1/assessments/?status=lost").status_code == 400
    api_client.force_authenticate(stakeholder)
    assert api_client.get("/api/v1/assessments/").status_code == 403


def test_admins_replace_a_deployments_questions(api_client, demo_deployment, admin_user, reviewer):
    url = f"/api/v1/deployments/{demo_deployment.pk}/questions/"
    api_client.force_authenticate(reviewer)
    default = api_client.get(url).json()["questions"]
    assert default == [
        {
            "name": "answer_correct",
            "kind": "thumbs",
            "text": "Is this response correct for your question?",
        }
    ]
    new = [
        {"name": "grounded", "text": "Is it grounded in the documents?", "kind": "thumbs"},
        {
            "name": "score",
            "text": "Overall score",
            "kind": "numeric",
            "min_value": 1,
            "max_value": 5,
        },
    ]
    assert api_client.put(url, {"questions": new}, format="json").status_code == 403
    api_client.force_authenticate(admin_user)
    saved = api_client.put(url, {"questions": new}, format="json")
    assert saved.status_code == 200
    assert [q["name"] for q in saved.json()["questions"]] == ["grounded", "score"]
    bad = api_client.put(
        url,
        {
            "questions": [
                {"name": "tone", "text": "Tone?", "kind": "categorical", "options": []},
                {"name": "tone", "text": "Again", "kind": "thumbs"},
            ]
        },
        format="json",
    )
    assert bad.status_code == 400
    assert "options" in str(bad.json()) and "must differ" in str(bad.json())
    assert [q["name"] for q in api_client.get(url).json()["questions"]] == ["grounded", "score"]
    assert api_client.put(url, {"questions": []}, format="json").json()["questions"] == default
