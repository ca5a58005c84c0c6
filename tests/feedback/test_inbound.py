"""Feedback sent the Databricks way (POST .../served-models/feedback/invocations with
dataframe_records) becomes ratings of real answers, forwarded like any other; all or nothing."""

import base64
import json

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from feedback.models import Delivery, Rating
from feedback.sinks import mlflow_assessments
from tests.feedback.conftest import chat_turn, retriever_span_id

pytestmark = pytest.mark.django_db
URL = "/serving-endpoints/{endpoint}/served-models/feedback/invocations"


def send(turn, body, *, token: str | None, scheme: str = "Bearer", endpoint: str | None = None):
    client = APIClient()
    if token is not None:
        credentials = token if scheme == "Bearer" else base64.b64encode(f"token:{token}".encode())
        if scheme != "Bearer":
            credentials = credentials.decode()
        client.credentials(HTTP_AUTHORIZATION=f"{scheme} {credentials}")
    url = URL.format(endpoint=endpoint or turn.deployment.endpoint_name)
    return client.post(url, body, format="json")


def token_of(user) -> str:
    return Token.objects.create(user=user).key


def docs_example(request_id: str, source_id: str) -> dict:
    """The example of https://docs.databricks.com/gcp/en/generative-ai/agent-framework/feedback-model
    (protocol.md §4.2), for our answer and our reviewer."""
    return {
        "dataframe_records": [
            {
                "source": {"id": source_id, "type": "human"},
                "request_id": request_id,
                "text_assessments": [
                    {
                        "ratings": {"answer_correct": {"value": "positive"}},
                        "free_text_comment": "The answer used the provided context.",
                    }
                ],
                "retrieval_assessments": [{"ratings": {"groundedness": {"value": "positive"}}}],
            }
        ]
    }


def test_the_docs_example_is_recorded_and_forwarded(turn, reviewer):
    response = send(
        turn, docs_example(turn.databricks_request_id, reviewer.email), token=token_of(reviewer)
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"predictions": {"result": "ok"}}
    rating = Rating.objects.get()
    assert (rating.request_id, rating.reviewer, rating.source_id) == (
        turn.pk,
        reviewer,
        reviewer.email,
    )
    assert rating.text_assessment["ratings"] == {"answer_correct": {"value": "positive"}}
    # A retrieval assessment without a position rates the retrieval as a whole: kept as sent.
    assert rating.retrieval_assessments == [{"ratings": {"groundedness": {"value": "positive"}}}]
    assert Delivery.objects.get(rating=rating).sink == "databricks_feedback"


def test_json_string_columns_and_basic_auth_work_as_the_chatbot_template_sends_them(
    turn, django_user_model
):
    from django.contrib.auth.models import Group

    app = django_user_model.objects.create_user("e2e-chatbot-app")
    app.groups.add(Group.objects.get(name="reviewer"))
    record = {
        "request_id": turn.databricks_request_id,
        "source": json.dumps({"id": "e2e-chatbot-app", "type": "human"}),
        "text_assessments": json.dumps(
            [{"ratings": {"answer_correct": {"value": "negative"}}, "free_text_comment": None}]
        ),
        "retrieval_assessments": json.dumps([]),
    }
    response = send(turn, {"dataframe_records": [record]}, token=token_of(app), scheme="Basic")
    assert response.status_code == 200, response.content
    assert Rating.objects.get().text_assessment == {
        "ratings": {"answer_correct": {"value": "negative"}}
    }


def test_dataframe_split_and_document_ratings_are_accepted(turn, reviewer):
    span = retriever_span_id(turn)
    relevance = {"chunk_relevance": {"value": "negative"}}
    documents = [{"position": 1, "step_id": span, "ratings": relevance}]
    body = {
        "dataframe_split": {
            "columns": ["request_id", "retrieval_assessments"],
            "data": [[turn.databricks_request_id, documents]],
        }
    }
    response = send(turn, body, token=token_of(reviewer))
    assert response.status_code == 200, response.content
    assert Rating.objects.get().retrieval_assessments[0]["position"] == 1


def test_one_bad_record_saves_none_and_each_problem_names_its_record(turn, reviewer):
    good = docs_example(turn.databricks_request_id, reviewer.email)["dataframe_records"][0]
    body = {
        "dataframe_records": [
            good,
            {**good, "request_id": "no-such-answer"},
            {**good, "text_assessments": [{"ratings": {"answer_correct": {"value": "maybe"}}}]},
        ]
    }
    response = send(turn, body, token=token_of(reviewer))
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert response.json()["error_code"] == "BAD_REQUEST"
    assert any(e.startswith("dataframe_records[1]: no answer 'no-such-answer'") for e in errors)
    assert any(e.startswith("dataframe_records[2]: text_assessments") for e in errors)
    assert not any(e.startswith("dataframe_records[0]") for e in errors)
    assert not Rating.objects.exists() and not Delivery.objects.exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"source": {"id": "someone@example.com", "type": "human"}}, "is not the token's user"),
        ({"source": {"type": "llm_judge"}}, 'only "human" feedback'),
        ({"text_assessments": "{not json"}, "not JSON"),
        ({"surprise": 1}, "unknown column(s): surprise"),
        (
            {"retrieval_assessments": [{"step_id": "0123456789abcdef", "ratings": {}}]},
            "is not a retriever span",
        ),
    ],
)
def test_bad_records_are_refused(turn, reviewer, change, message):
    record = {**docs_example(turn.databricks_request_id, reviewer.email)["dataframe_records"][0]}
    record.update(change)
    response = send(turn, {"dataframe_records": [record]}, token=token_of(reviewer))
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert not Rating.objects.exists()


def test_the_answer_must_come_from_that_endpoint(turn, reviewer):
    body = docs_example(turn.databricks_request_id, reviewer.email)
    response = send(turn, body, token=token_of(reviewer), endpoint="agents_main-other-bot")
    assert response.status_code == 400
    assert "came from endpoint 'agents_main-demo-rag_agent'" in response.json()["message"]


@pytest.mark.parametrize("body", [[], {"inputs": []}, {"dataframe_records": []}, "text"])
def test_a_body_that_is_no_feedback_payload_is_a_400(turn, reviewer, body):
    response = send(turn, body, token=token_of(reviewer))
    assert response.status_code == 400
    assert not Rating.objects.exists()


def test_a_caller_needs_a_valid_token_and_the_reviewer_role(turn, reviewer, stakeholder):
    body = docs_example(turn.databricks_request_id, reviewer.email)
    assert send(turn, body, token=None).status_code == 401
    assert send(turn, body, token="wrong").status_code == 401
    assert send(turn, body, token="wrong", scheme="Basic").status_code == 401
    assert send(turn, body, token=token_of(stakeholder)).status_code == 403
    assert not Rating.objects.exists()


def test_a_whole_retrieval_rating_becomes_one_mlflow_feedback_per_name(turn, reviewer):
    from feedback import services

    span = retriever_span_id(turn)
    rating = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        retrieval_assessments=[
            {
                "step_id": span,
                "ratings": {"groundedness": {"value": "negative"}},
                "free_text_comment": "Cites a document that says otherwise.",
            },
            {"position": 0, "step_id": span, "ratings": {"chunk_relevance": {"value": "positive"}}},
        ],
    )
    assessments = dict(mlflow_assessments(rating, "tr-123"))
    whole = assessments[f"retrieval:{span}:groundedness"]
    assert whole["span_id"] == span and whole["feedback"] == {"value": False}
    assert whole["rationale"] == "Cites a document that says otherwise."
    assert whole["metadata"]["scope"] == "retrieval"
    assert assessments[f"doc:{span}:0"]["feedback"] == {"value": True}
    assert rating.document_rating_count == 1


def test_a_page_edit_keeps_a_whole_retrieval_rating(client, turn, reviewer):
    from feedback import services

    services.rating_create(
        turn=turn,
        reviewer=reviewer,
        retrieval_assessments=[{"ratings": {"groundedness": {"value": "positive"}}}],
    )
    services.rating_change(
        turn=turn,
        reviewer=reviewer,
        document={
            "position": 2,
            "step_id": retriever_span_id(turn),
            "ratings": {"chunk_relevance": {"value": "negative"}},
        },
    )
    current = Rating.objects.get(is_current=True).retrieval_assessments
    assert {"ratings": {"groundedness": {"value": "positive"}}} in current and len(current) == 2


def test_records_of_two_answers_are_two_ratings(turn, reviewer, demo_deployment):
    other = chat_turn(demo_deployment, reviewer, message="And spans?")
    body = docs_example(turn.databricks_request_id, reviewer.email)
    body["dataframe_records"].append(
        docs_example(other.databricks_request_id, reviewer.email)["dataframe_records"][0]
    )
    assert send(turn, body, token=token_of(reviewer)).status_code == 200
    assert Rating.objects.filter(is_current=True).count() == 2


def test_errors_of_the_endpoint_are_json(turn, reviewer, client):
    deep = {"dataframe_records": [{"request_id": turn.databricks_request_id}]}
    node = deep
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    response = send(turn, deep, token=token_of(reviewer))
    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST"
    assert "nested deeper than" in response.json()["message"]
    assert send(turn, deep, token="wrong").json()["error_code"] == "UNAUTHENTICATED"
    missing = client.post("/serving-endpoints/x/served-models/other/invocations", {})
    assert missing.status_code == 404 and missing.json() == {"detail": "Not found."}


def test_a_json_string_column_nested_too_deep_is_a_400_naming_its_record(turn, reviewer):
    record = {
        "request_id": turn.databricks_request_id,
        "text_assessments": "[" * 100_000 + "]" * 100_000,
    }
    response = send(turn, {"dataframe_records": [record]}, token=token_of(reviewer))
    assert response.status_code == 400
    assert response.json()["errors"] == [
        "dataframe_records[0]: text_assessments: JSON nested deeper than 64 levels."
    ]


@pytest.mark.parametrize("columns", [[["request_id"]], ["request_id", "request_id"], [1]])
def test_dataframe_split_columns_must_be_distinct_names(turn, reviewer, columns):
    row = [turn.databricks_request_id] * len(columns)
    body = {"dataframe_split": {"columns": columns, "data": [row]}}
    response = send(turn, body, token=token_of(reviewer))
    assert response.status_code == 400 and "distinct column names" in response.json()["message"]


def test_a_disabled_deployment_is_named_per_record(turn, admin_user):
    turn.deployment.enabled = False  # admins still see it; reviewers do not (no such answer)
    turn.deployment.save(update_fields=["enabled"])
    body = docs_example(turn.databricks_request_id, admin_user.email)
    response = send(turn, body, token=token_of(admin_user))
    assert response.status_code == 400
    assert response.json()["errors"][0].startswith("dataframe_records[0]: ")
    assert "disabled" in response.json()["message"]


def test_a_whole_retrieval_rationale_must_be_text(turn, reviewer):
    from django.core.exceptions import ValidationError

    from feedback import services

    for bad in ({"not": "text"}, "x" * 5_001):
        item = {"ratings": {"groundedness": {"value": "positive", "rationale": bad}}}
        with pytest.raises(ValidationError, match="rationale"):
            services.rating_create(turn=turn, reviewer=reviewer, retrieval_assessments=[item])
    assert not Rating.objects.exists()


def test_the_assessment_log_lists_a_whole_retrieval_rating(turn, reviewer):
    send(turn, docs_example(turn.databricks_request_id, reviewer.email), token=token_of(reviewer))
    client = APIClient()
    client.force_authenticate(reviewer)
    rows = client.get("/api/v1/assessments/").json()["results"]
    whole = [r for r in rows if r["retrieval_assessment"]]
    assert whole[0]["step_id"] is None
    assert whole[0]["retrieval_assessment"]["ratings"] == {"groundedness": {"value": "positive"}}


def test_the_rating_bar_shows_a_whole_retrieval_rating(client, turn, reviewer):
    send(turn, docs_example(turn.databricks_request_id, reviewer.email), token=token_of(reviewer))
    client.force_login(reviewer)
    page = client.get(f"/requests/{turn.databricks_request_id}/").content.decode()
    assert "retrieval groundedness: positive" in page
