"""What one rating POST costs the database, pinned: the API and the chat's rating bar, a first
rating and a change of it (before issue 12: 11 and 11 for the API, 17 and 17 for the bar; the
access cache then added its stamp read and removed the visibility subqueries, 2-3 ms of CPU).
A query added to these paths fails here; if it is worth its cost, change the count and say
why.

Fewer is not always cheaper: here a round trip to PostgreSQL costs ~0.1 ms and the ORM's work
on an EXISTS subquery ~0.4 ms of CPU, so folding the roles into the token's query, or "is there
a version to retire" into the turn's lock, made the POST slower (feedback.services._turn_lock)."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from agents.selectors import trace_outlines_forget
from feedback.models import Delivery, Rating
from tests.feedback.conftest import retriever_span_id

pytestmark = pytest.mark.django_db


def statements(queries: CaptureQueriesContext) -> list[str]:
    """The POST's statements, without the savepoints the test's own transaction adds (outside
    tests the POST's transaction is one BEGIN ... COMMIT, which Django does not log)."""
    return [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]


def test_an_api_rating_takes_12_queries_and_a_change_of_it_10(client, turn, reviewer):
    token = Token.objects.create(user=reviewer)
    body = {
        "text_assessments": [
            {"ratings": {"answer_correct": {"value": "negative"}}, "free_text_comment": "Vague"}
        ],
        "retrieval_assessments": [
            {
                "position": 0,
                "step_id": retriever_span_id(turn),
                "ratings": {"chunk_relevance": {"value": "positive"}},
            }
        ],
    }
    counts = []
    for _ in range(2):
        trace_outlines_forget()  # as in a process that has not read it yet
        with CaptureQueriesContext(connection) as queries:
            response = client.post(
                f"/api/v1/requests/{turn.databricks_request_id}/assessments/",
                data=json.dumps(body),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Token {token.key}",
            )
        assert response.status_code == 201, response.json()
        assert response.json()["delivery"]["status"] == "pending"
        counts.append(len(statements(queries)))
    # The access stamp (agents.access), then the first time in this process the token and
    # user and their roles (kept after); the stamp again (the turn's visibility); the turn;
    # the first time, whether the reviewer sees its deployment (kept after); its label
    # schemas; its trace's stored outline (to check the document); the turn's lock; retire
    # the current version (none the first time); the rating; its delivery. A change also
    # supersedes the previous version's unsent delivery. The stamp reads and the plain turn
    # read cost less CPU than the token, roles and visibility queries they replace
    # (bench/README.md).
    assert counts == [12, 10]
    assert Rating.objects.filter(is_current=True).count() == 1
    assert sorted(Delivery.objects.values_list("status", flat=True)) == ["pending", "superseded"]


def test_the_rating_bar_saves_in_10_queries_and_a_change_in_12(client, turn, reviewer):
    client.force_login(reviewer)
    counts, pages = [], []
    for value in ("negative", "positive"):
        with CaptureQueriesContext(connection) as queries:
            response = client.post(
                f"/requests/{turn.databricks_request_id}/rating/",
                {"q_answer_correct": value, "comment": "Vague"},
                HTTP_HX_REQUEST="true",
            )
        assert response.status_code == 200
        counts.append(len(statements(queries)))
        pages.append(response.content.decode())
    # The session, the user, their roles; the access stamp; the turn (whether the reviewer sees
    # its deployment: cached); its label schemas; the turn's lock; the current version (none
    # the first time); the rating; its delivery. A change also retires the current version and
    # supersedes its unsent delivery. The bar then shows the version just saved without
    # reading it again.
    assert counts == [10, 12]
    assert 'value="positive" checked' in pages[1] and "Saved · delivering" in pages[1]
