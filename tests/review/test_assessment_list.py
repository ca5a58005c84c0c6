"""The assessments page: every rating version, filtered by what the URL holds, each linking to
its turn; its export takes the same filters."""

import json

import pytest

from feedback import services
from tests.feedback.conftest import chat_turn

pytestmark = pytest.mark.django_db


def thumbs(value: str, comment: str = "") -> list[dict]:
    given = {"ratings": {"answer_correct": {"value": value}}}
    if comment:
        given["free_text_comment"] = comment
    return [given]


@pytest.fixture
def ratings(demo_deployment, reviewer, admin_user):
    turn = chat_turn(demo_deployment, reviewer, top_k=3)
    other = chat_turn(demo_deployment, reviewer, message="How do I rate a document?")
    made = [
        services.rating_create(turn=turn, reviewer=reviewer, text_assessments=thumbs("positive")),
        services.rating_create(
            turn=turn, reviewer=reviewer, text_assessments=thumbs("negative", "Off topic")
        ),
        services.rating_create(
            turn=other, reviewer=admin_user, text_assessments=thumbs("positive")
        ),
    ]
    return turn, other, made


def listed(client, **params) -> str:
    response = client.get("/assessments/", params)
    assert response.status_code == 200, response.content
    return response.content.decode()


def test_every_version_is_listed_and_links_to_its_turn(client, reviewer, ratings):
    turn, other, _ = ratings
    client.force_login(reviewer)
    page = listed(client)
    assert page.count(f'href="/requests/{turn.databricks_request_id}/"') == 2
    assert page.count(f'href="/requests/{other.databricks_request_id}/"') == 1
    assert "earlier version" in page and "Off topic" in page


@pytest.mark.parametrize(
    ("params", "rows"),
    [
        ({"question": "answer_correct", "value": "negative"}, 1),
        ({"question": "answer_correct", "value": "positive"}, 2),
        ({"reviewer": "rita-reviewer"}, 2),
        ({"current": "on"}, 2),
        ({"question": "no_such_question"}, 0),
        ({"since": "2999-01-01"}, 0),
    ],
)
def test_filters_select_the_versions(client, reviewer, ratings, params, rows):
    client.force_login(reviewer)
    page = listed(client, **params)
    assert page.count('data-label="Reviewer"') == rows
    export = client.get("/assessments/export/jsonl/", params)
    lines = b"".join(export.streaming_content).decode().splitlines()
    assert len(lines) == rows, "the export selects what the page lists"
    if rows:
        assert all(json.loads(line)["text_assessment"] for line in lines)


def test_bad_filters_and_non_reviewers_are_refused(client, reviewer, stakeholder, ratings):
    client.force_login(reviewer)
    response = client.get("/assessments/", {"value": "negative"})
    assert response.status_code == 400 and "Name the question" in response.content.decode()
    assert (
        client.get("/assessments/", {"since": "2026-12-02", "until": "2026-12-01"}).status_code
        == 400
    )
    client.force_login(stakeholder)
    assert client.get("/assessments/").status_code == 403
    assert client.get("/assessments/export/csv/").status_code == 403


def test_the_page_links_its_filtered_export(client, reviewer, ratings):
    client.force_login(reviewer)
    page = listed(client, question="answer_correct", value="negative")
    assert 'href="/assessments/export/parquet/?question=answer_correct&amp;value=negative"' in page
