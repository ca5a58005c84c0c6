"""The assessments API: rate a turn, read a rating with its delivery, list assessment logs."""

import json

import pytest

from feedback import label_schema_services, services
from feedback.models import Delivery, Rating
from tests.feedback.conftest import chat_turn, label_schemas, retriever_span_id
from tests.support.turns import logged_turn

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


LABEL_SCHEMAS = "/api/v1/label-schemas/"


def set_url(deployment) -> str:
    return f"/api/v1/deployments/{deployment.pk}/label-schemas/"


def names(response) -> list[str]:
    return [schema["name"] for schema in response.json()]


def test_admins_create_and_change_label_schemas_and_everyone_reads_them(
    api_client, admin_user, reviewer, stakeholder
):
    tone = {
        "name": "tone",
        "title": "Is the tone right?",
        "instruction": "Formal for **customers**.",
        "input_type": "categorical_list",
        "options": ["formal", "friendly", "curt"],
    }
    api_client.force_authenticate(reviewer)
    assert api_client.post(LABEL_SCHEMAS, tone, format="json").status_code == 403
    api_client.force_authenticate(admin_user)
    created = api_client.post(LABEL_SCHEMAS, tone, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert {k: body[k] for k in tone} == tone
    assert (body["kind"], body["required"], body["enable_comment"], body["step"]) == (
        "feedback",
        False,
        False,
        None,
    )
    again = api_client.post(LABEL_SCHEMAS, tone, format="json")
    assert again.status_code == 400 and "already exists" in str(again.json())
    bad = api_client.post(
        LABEL_SCHEMAS,
        {"name": "score", "title": "Score?", "input_type": "numeric", "min_value": 5},
        format="json",
    )
    assert bad.status_code == 400 and "max_value" in bad.json()
    api_client.force_authenticate(stakeholder)  # any signed-in user reads them
    assert "tone" in names(api_client.get(LABEL_SCHEMAS))
    assert "score" not in names(api_client.get(LABEL_SCHEMAS))
    assert api_client.get(f"{LABEL_SCHEMAS}tone/").json()["title"] == "Is the tone right?"
    assert api_client.get(f"{LABEL_SCHEMAS}nope/").status_code == 404
    assert (
        api_client.patch(f"{LABEL_SCHEMAS}tone/", {"title": "Tone?"}, format="json").status_code
        == 403
    )
    api_client.force_authenticate(admin_user)
    changed = api_client.patch(
        f"{LABEL_SCHEMAS}tone/", {"name": "tone", "title": "Tone?", "required": True}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert (changed.json()["title"], changed.json()["required"]) == ("Tone?", True)
    refused = api_client.patch(f"{LABEL_SCHEMAS}tone/", {"options": ["only"]}, format="json")
    assert refused.status_code == 400 and "options" in refused.json()
    assert api_client.get(f"{LABEL_SCHEMAS}tone/").json()["options"] == tone["options"]


def test_a_label_schema_in_use_is_not_deleted(api_client, admin_user, reviewer, deployment_factory):
    bot = deployment_factory()
    label_schemas(
        bot,
        {"name": "grounded", "input_type": "thumbs"},
        {"name": "unused", "input_type": "text"},
    )
    api_client.force_authenticate(admin_user)
    # In a deployment's set: refused, and both the schema and the set stay as they were.
    refused = api_client.delete(f"{LABEL_SCHEMAS}grounded/")
    assert refused.status_code == 400 and "in use" in str(refused.json())
    assert names(api_client.get(set_url(bot))) == ["grounded", "unused"]
    # Labelled, though no longer in a set: refused too, and its name and type cannot change.
    turn = logged_turn(bot, reviewer)
    services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[{"ratings": {"grounded": {"value": "negative"}}}],
    )
    api_client.put(set_url(bot), {"label_schemas": ["unused"]}, format="json")
    assert api_client.delete(f"{LABEL_SCHEMAS}grounded/").status_code == 400
    retyped = api_client.patch(
        f"{LABEL_SCHEMAS}grounded/", {"input_type": "text", "name": "other"}, format="json"
    )
    assert retyped.status_code == 400
    assert set(retyped.json()) == {"input_type", "name"}
    assert api_client.get(f"{LABEL_SCHEMAS}grounded/").json()["input_type"] == "thumbs"
    assert api_client.get(f"{LABEL_SCHEMAS}other/").status_code == 404
    # Its wording may change: the labels still answer the same question.
    retitled = api_client.patch(f"{LABEL_SCHEMAS}grounded/", {"title": "Grounded?"}, format="json")
    assert retitled.status_code == 200
    api_client.put(set_url(bot), {"label_schemas": []}, format="json")
    api_client.force_authenticate(reviewer)
    assert api_client.delete(f"{LABEL_SCHEMAS}unused/").status_code == 403
    api_client.force_authenticate(admin_user)
    assert api_client.delete(f"{LABEL_SCHEMAS}unused/").status_code == 204
    assert api_client.get(f"{LABEL_SCHEMAS}unused/").status_code == 404
    assert api_client.get(f"{LABEL_SCHEMAS}grounded/").status_code == 200


def test_admins_set_a_deployments_label_schemas(
    api_client, admin_user, reviewer, deployment_factory
):
    bot = deployment_factory()
    for name, fields in (
        ("grounded", {"input_type": "thumbs"}),
        ("score", {"input_type": "numeric", "min_value": 1, "max_value": 5}),
    ):
        label_schema_services.label_schema_save(data={"name": name, "title": f"{name}?", **fields})
    url = set_url(bot)
    api_client.force_authenticate(reviewer)
    [default] = api_client.get(url).json()
    assert (default["name"], default["input_type"], default["title"]) == (
        "answer_correct",
        "thumbs",
        "Is this response correct for your question?",
    )
    assert api_client.put(url, {"label_schemas": ["score"]}, format="json").status_code == 403
    api_client.force_authenticate(admin_user)
    saved = api_client.put(url, {"label_schemas": ["score", "grounded"]}, format="json")
    assert saved.status_code == 200, saved.content
    assert names(saved) == ["score", "grounded"]  # in the order given
    for body, message in (
        ({"label_schemas": ["grounded", "nope"]}, "No label schema named 'nope'."),
        ({"label_schemas": ["grounded", "grounded"]}, "grounded is named more than once."),
        ({"label_schemas": "grounded"}, "list"),
        ({}, "required"),
    ):
        bad = api_client.put(url, body, format="json")
        assert bad.status_code == 400 and message in str(bad.json()), bad.json()
        assert names(api_client.get(url)) == ["score", "grounded"]  # nothing changed
    emptied = api_client.put(url, {"label_schemas": []}, format="json")
    assert names(emptied) == ["answer_correct"]  # the default question is back
    other = deployment_factory()
    other.allowed_users.set([admin_user])
    api_client.force_authenticate(reviewer)
    assert api_client.get(set_url(other)).status_code == 404
