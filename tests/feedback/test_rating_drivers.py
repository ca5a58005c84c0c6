"""The rating API under uvicorn, as `make run` serves it. On PostgreSQL a token's everyday rating
is saved on the event loop (feedback/lean_rating_api.py, rating_on_loop.py); everything else
goes to Django's view. Both must save the same rows and answer alike; what the lean path cannot
answer it hands over, with nothing written."""

import json
import threading

import httpx
import pytest
from django.core.signals import request_started
from django.db import connection
from rest_framework.authtoken.models import Token

from agents import access
from agents.selectors import retriever_documents
from feedback.models import Delivery, Rating
from reviewapp import pg_loop
from tests.conftest import require_server
from tests.feedback.conftest import chat_turn, label_schemas, retriever_span_id

pytestmark = [pytest.mark.integration]
THUMBS_UP = {"text_assessments": [{"ratings": {"answer_correct": {"value": "positive"}}}]}
THUMBS_DOWN = {
    "text_assessments": [
        {"ratings": {"answer_correct": {"value": "negative"}}, "free_text_comment": "Off topic"}
    ]
}
RATING_FIELDS = [
    "request_id", "deployment_id", "reviewer_id", "source_id", "source_type", "text_assessment",
    "retrieval_assessments", "is_current", "relayed_by_id",
]  # fmt: skip
DELIVERY_FIELDS = [
    "deployment_id", "sink", "status", "attempts", "claimed_at", "claim_token", "lost_claims",
    "last_error", "sink_state", "sent_at",
]  # fmt: skip


@pytest.fixture(autouse=True)
def on_postgresql(transactional_db):
    require_server(
        connection.vendor == "postgresql",
        "PostgreSQL as the test database (DATABASE_URL=postgres://...)",
    )


@pytest.fixture
def published(monkeypatch) -> list:
    """The delivery ids handed to the broker (no worker runs here: they stay pending)."""
    ids: list = []
    monkeypatch.setattr(
        "feedback.tasks.delivery_send.apply_async", lambda args, **kw: ids.extend(args)
    )
    return ids


@pytest.fixture
def django_requests():
    seen = []

    def count(**kwargs):
        seen.append(kwargs)

    request_started.connect(count)
    yield seen
    request_started.disconnect(count)


@pytest.fixture
def token(reviewer) -> str:
    return Token.objects.create(user=reviewer).key


def rate(server, turn_or_id, token: str, body) -> httpx.Response:
    request_id = getattr(turn_or_id, "databricks_request_id", turn_or_id)
    return httpx.post(
        f"{server.url}/api/v1/requests/{request_id}/assessments/",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        timeout=30,
        content=body if isinstance(body, bytes) else json.dumps(body),
    )


def document_rating(turn) -> dict:
    return {
        "retrieval_assessments": [
            {
                "position": 1,
                "step_id": retriever_span_id(turn),
                "ratings": {"chunk_relevance": {"value": "negative"}},
            }
        ]
    }


def stored(turn) -> list[tuple]:
    """The turn's ratings, oldest first, each with its delivery's fields."""
    rows = []
    for rating in Rating.objects.filter(request=turn).order_by("pk"):
        delivery = Delivery.objects.filter(rating=rating).first()
        rows.append(
            (
                tuple(getattr(rating, name) for name in RATING_FIELDS),
                delivery and tuple(getattr(delivery, name) for name in DELIVERY_FIELDS),
                delivery and delivery.next_attempt_at == delivery.retrying_since,
            )
        )
    return rows


def answered(response: httpx.Response, turn) -> dict:
    body = response.json()
    assert body.pop("request_id") == turn.databricks_request_id
    for name in ("id", "created_at"):
        assert body.pop(name)
    body["delivery"].pop("next_attempt_at")
    return body


def three_versions(settings, server, demo_deployment, reviewer, token, *, on_loop: bool):
    """A thumbs up, then a thumbs down that replaces it (its delivery not sent yet), then a
    document's rating: the answers and the rows."""
    settings.API_DB_ASYNC = on_loop
    access.forget()  # as a process that starts
    turn = chat_turn(demo_deployment, reviewer, top_k=3)
    retriever_documents(turn.databricks_request_id)  # the outline is made when the tree opens
    warm_up = rate(server, turn, token, THUMBS_UP)  # the access cache learns the reviewer
    assert warm_up.status_code == 201, warm_up.text
    Rating.objects.all().delete()
    answers = [rate(server, turn, token, body) for body in (THUMBS_UP, THUMBS_DOWN)]
    answers.append(rate(server, turn, token, document_rating(turn)))
    assert [a.status_code for a in answers] == [201, 201, 201], [a.text for a in answers]
    # Each turn's trace has its own span ids: the retriever's is named alike in both.
    span_named = json.dumps([[answered(a, turn) for a in answers], stored(turn)], default=str)
    return json.loads(span_named.replace(retriever_span_id(turn), "the-retriever-span"))


def test_both_drivers_save_the_same_rows_and_answer_alike(
    settings, asgi_live_server, demo_deployment, reviewer, token, published, django_requests
):
    by_orm = three_versions(
        settings, asgi_live_server, demo_deployment, reviewer, token, on_loop=False
    )
    assert len(django_requests) == 4
    django_requests.clear()
    on_loop = three_versions(
        settings, asgi_live_server, demo_deployment, reviewer, token, on_loop=True
    )
    assert len(django_requests) == 1, "only the warm-up, while the cache was cold, went to Django"

    answers, rows = on_loop
    assert answers == by_orm[0]
    assert [(r[0][1:], r[1:]) for r in rows] == [(r[0][1:], r[1:]) for r in by_orm[1]]
    assert [delivery[2] for _, delivery, _ in rows] == ["superseded", "superseded", "pending"]
    assert [current[7] for current, _, _ in rows] == [False, False, True]
    deliveries = Delivery.objects.filter(rating__request_id=rows[0][0][0])
    assert set(deliveries.values_list("pk", flat=True)) <= set(published)


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"source": {"id": "someone-else"}, **THUMBS_UP}, 400, "do not send it"),
        ({"text_assessments": [{"ratings": {"nope": {"value": "positive"}}}]}, 400, "nope"),
        ({}, 400, "This rating is empty"),
        (b"{not json", 400, "JSON parse error"),
        ({"retrieval_assessments": [{"position": 99, "step_id": "00", "ratings": {}}]}, 400, ""),
    ],
)
def test_what_the_lean_path_refuses_is_answered_by_the_api_and_writes_nothing(
    asgi_live_server, turn, token, published, body, status, says
):
    assert rate(asgi_live_server, turn, token, THUMBS_UP).status_code == 201  # cache warm
    Rating.objects.all().delete()
    response = rate(asgi_live_server, turn, token, body)
    assert response.status_code == status, response.text
    assert says in response.text
    assert not Rating.objects.exists() and not Delivery.objects.exists()


def test_unknown_turns_other_tokens_and_non_reviewers_get_the_apis_refusals(
    asgi_live_server, turn, token, stakeholder, published
):
    assert rate(asgi_live_server, turn, token, THUMBS_UP).status_code == 201
    Rating.objects.all().delete()
    assert rate(asgi_live_server, "no-such-turn", token, THUMBS_UP).status_code == 404
    assert rate(asgi_live_server, turn, "not-a-token", THUMBS_UP).status_code == 401
    stakeholder_token = Token.objects.create(user=stakeholder).key
    for _ in range(2):  # the second time the cache knows the stakeholder
        assert rate(asgi_live_server, turn, stakeholder_token, THUMBS_UP).status_code == 403
    turn.deployment.enabled = False
    turn.deployment.save()  # moves the access stamp: the lean path asks the view again
    assert rate(asgi_live_server, turn, token, THUMBS_UP).status_code == 404
    assert not Rating.objects.exists()


def test_a_label_schema_set_applies_to_the_next_rating(
    asgi_live_server, demo_deployment, turn, token, published, django_requests
):
    assert rate(asgi_live_server, turn, token, THUMBS_UP).status_code == 201
    label_schemas(
        demo_deployment, {"name": "tone", "input_type": "categorical", "options": ["ok", "rude"]}
    )
    django_requests.clear()
    tone = {"text_assessments": [{"ratings": {"tone": {"value": "rude"}}}]}
    assert rate(asgi_live_server, turn, token, tone).status_code == 201
    assert rate(asgi_live_server, turn, token, THUMBS_UP).status_code == 400  # not asked any more
    assert len(django_requests) == 1, "the valid rating was saved on the loop"


def test_concurrent_versions_of_one_reviewer_leave_one_current_and_one_unsent(
    asgi_live_server, turn, token, published
):
    assert rate(asgi_live_server, turn, token, THUMBS_UP).status_code == 201
    statuses: list[int] = []

    def post(body):
        statuses.append(rate(asgi_live_server, turn, token, body).status_code)

    threads = [
        threading.Thread(target=post, args=(body,)) for body in [THUMBS_DOWN, THUMBS_UP] * 10
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201] * 20
    assert Rating.objects.filter(request=turn).count() == 21
    assert Rating.objects.filter(request=turn, is_current=True).count() == 1
    unsent = Delivery.objects.filter(rating__request=turn, status="pending")
    assert list(unsent.values_list("rating__is_current", flat=True)) == [True]


def test_a_dead_connection_hands_the_rating_to_django_and_it_is_saved(
    asgi_live_server, turn, token, published, caplog
):
    assert rate(asgi_live_server, turn, token, THUMBS_UP).status_code == 201
    assert rate(asgi_live_server, turn, token, THUMBS_DOWN).status_code == 201  # pool open
    with connection.cursor() as cursor:  # PostgreSQL restarted, as far as the pool can tell
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [pg_loop.APPLICATION_NAME],
        )
        assert cursor.fetchall(), "the lean path's pool had connections"
    response = rate(asgi_live_server, turn, token, THUMBS_UP)
    assert response.status_code == 201, response.text
    assert "rating: through Django instead" in caplog.text
    assert Rating.objects.filter(request=turn).count() == 3
    assert rate(asgi_live_server, turn, token, THUMBS_DOWN).status_code == 201  # on the loop again
