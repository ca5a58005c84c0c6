"""Rating on the pages (htmx fragments), the deliveries page and the counts on deployments."""

import pytest
from django.utils import timezone

from feedback import services
from feedback.models import Delivery, Rating
from tests.feedback.conftest import chat_turn, retriever_span_id

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def rate_url(turn):
    return f"/requests/{turn.databricks_request_id}/rating/"


def test_reviewers_see_the_rating_bar_and_stakeholders_do_not(
    client, demo_deployment, reviewer, stakeholder
):
    turn = chat_turn(demo_deployment, stakeholder)
    client.force_login(stakeholder)
    page = client.get(f"/requests/{turn.databricks_request_id}/").content.decode()
    assert "Is this response correct for your question?" not in page
    client.force_login(reviewer)
    page = client.get(f"/requests/{turn.databricks_request_id}/").content.decode()
    assert "Is this response correct for your question?" in page
    assert 'name="q_answer_correct" value="negative"' in page
    assert "Not rated yet." in page


def test_the_bar_saves_a_rating_and_shows_it_saved(client, turn, reviewer):
    client.force_login(reviewer)
    response = client.post(
        rate_url(turn),
        {"q_answer_correct": "negative", "comment": "Vague", "suggested_output": "Be precise."},
        **HTMX,
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert 'value="negative" checked' in html
    assert "Saved · delivering…" in html
    assert "every 2s" in html  # polls until delivered
    rating = Rating.objects.get()
    assert rating.text_assessment == {
        "ratings": {"answer_correct": {"value": "negative"}},
        "free_text_comment": "Vague",
        "suggested_output": "Be precise.",
    }
    # The status fragment says "delivered" once the sink took it, and stops polling.
    Delivery.objects.update(status="sent", sent_at=timezone.now(), attempts=1)
    status = client.get(f"{rate_url(turn)}status/").content.decode()
    assert "delivered" in status and "every 2s" not in status


def test_a_bad_value_is_explained_and_nothing_is_saved(client, turn, reviewer):
    client.force_login(reviewer)
    html = client.post(rate_url(turn), {"q_answer_correct": "maybe"}, **HTMX).content.decode()
    assert "must be &quot;positive&quot; or &quot;negative&quot;" in html
    assert not Rating.objects.exists()


def test_a_document_is_rated_from_the_span_detail(client, turn, reviewer):
    client.force_login(reviewer)
    span_id = retriever_span_id(turn)
    detail = client.get(f"/requests/{turn.databricks_request_id}/spans/{span_id}/").content
    assert b"Not relevant" in detail
    url = f"/requests/{turn.databricks_request_id}/spans/{span_id}/documents/1/rating/"
    html = client.post(url, {"relevance": "negative", "comment": "Old"}, **HTMX).content.decode()
    assert 'value="negative" checked' in html
    assert 'hx-swap-oob="true"' in html  # the answer's status line follows
    rating = Rating.objects.get(is_current=True)
    assert rating.retrieval_assessments == [
        {
            "position": 1,
            "step_id": span_id,
            "ratings": {"chunk_relevance": {"value": "negative"}},
            "free_text_comment": "Old",
        }
    ]
    client.post(url, {"clear": "1"}, **HTMX)
    assert Rating.objects.get(is_current=True).retrieval_assessments == []
    missing = f"/requests/{turn.databricks_request_id}/spans/{span_id}/documents/7/rating/"
    html = client.post(missing, {"relevance": "positive"}, **HTMX).content.decode()
    assert "outside the 3 document(s)" in html


def test_stakeholders_cannot_rate(client, demo_deployment, stakeholder):
    turn = chat_turn(demo_deployment, stakeholder)
    client.force_login(stakeholder)
    assert client.post(rate_url(turn), {"q_answer_correct": "positive"}).status_code == 403
    assert client.post("/requests/nope/rating/", {"q_answer_correct": "positive"}).status_code in (
        403,
        404,
    )
    assert not Rating.objects.exists()


def test_the_deliveries_page_filters_and_sends_failed_ones_again(
    client, turn, reviewer, admin_user, django_capture_on_commit_callbacks
):
    rating = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[{"ratings": {"answer_correct": {"value": "negative"}}}],
    )
    delivery = rating.deliveries.get()
    Delivery.objects.filter(pk=delivery.pk).update(
        status="failed", attempts=1, last_error="HTTP 401: token refused"
    )
    client.force_login(reviewer)
    assert client.get("/deliveries/").status_code == 403
    client.force_login(admin_user)
    page = client.get("/deliveries/?status=failed").content.decode()
    assert "HTTP 401: token refused" in page and "Send again" in page
    assert "No delivery matches" in client.get("/deliveries/?status=sent").content.decode()
    with django_capture_on_commit_callbacks() as callbacks:
        row = client.post(f"/deliveries/{delivery.pk}/resend/", **HTMX).content.decode()
    assert len(callbacks) == 1
    assert 'data-status="pending"' in row and "Send again" not in row
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == ("pending", "")


def test_the_deployments_page_counts_ratings_and_deliveries(client, turn, reviewer, admin_user):
    for value in ("negative", "positive"):  # two versions: one current rating
        services.rating_create(
            turn=turn,
            reviewer=reviewer,
            text_assessments=[{"ratings": {"answer_correct": {"value": value}}}],
        )
    Delivery.objects.filter(pk=Delivery.objects.first().pk).update(status="failed")
    client.force_login(admin_user)
    html = client.get("/deployments/").content.decode()
    assert "1 pending" in html and "1 failed" in html
    assert f"/deliveries/?deployment={turn.deployment_id}&amp;status=failed" in html
