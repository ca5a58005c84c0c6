"""Rating on the pages (htmx fragments), the deliveries page and the counts on deployments."""

import pytest
from django.utils import timezone

from feedback import label_schema_services, services
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
    assert "Not rated yet · ratings go to the Databricks feedback endpoint at 127.0.0.1" in page


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
    assert "Saved · delivering to the Databricks feedback endpoint at 127.0.0.1" in html
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
    assert "to the Databricks feedback endpoint at 127.0.0.1" in status


def test_a_rating_on_a_deployment_without_a_sink_says_it_stays_here(client, turn, reviewer):
    turn.deployment.feedback_sink = "none"
    turn.deployment.save(update_fields=["feedback_sink"])
    client.force_login(reviewer)
    before = client.get(f"/requests/{turn.databricks_request_id}/").content.decode()
    assert "Not rated yet · ratings are kept here only." in before
    html = client.post(rate_url(turn), {"q_answer_correct": "positive"}, **HTMX).content.decode()
    assert "Saved · " in html and "kept here only" in html
    assert "delivering" not in html and not Delivery.objects.exists()


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
    assert "is not one of the 3 document(s)" in html


def test_stakeholders_cannot_rate(client, demo_deployment, stakeholder):
    turn = chat_turn(demo_deployment, stakeholder)
    client.force_login(stakeholder)
    assert client.post(rate_url(turn), {"q_answer_correct": "positive"}).status_code == 403
    assert (
        client.post("/requests/nope/rating/", {"q_answer_correct": "positive"}).status_code == 403
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


def test_the_deployments_page_counts_ratings_and_deliveries(
    client, turn, reviewer, admin_user, demo_deployment
):
    other = chat_turn(demo_deployment, reviewer, message="Another question")
    for rated, value in ((turn, "negative"), (turn, "positive"), (other, "positive")):
        services.rating_create(
            turn=rated,
            reviewer=reviewer,
            text_assessments=[{"ratings": {"answer_correct": {"value": value}}}],
        )
    Delivery.objects.filter(rating__request=other).update(status="failed")
    client.force_login(admin_user)
    html = client.get("/deployments/").content.decode()
    # Two current ratings; the first version of one was replaced before it went out.
    assert '<td class="num" data-label="Ratings">2' in html
    assert "1 pending" in html and "1 failed" in html and "1 superseded" in html
    assert f"/deliveries/?deployment={turn.deployment_id}&amp;status=failed" in html


def test_a_reviewer_outside_a_restricted_deployment_sees_and_rates_nothing(
    client, turn, reviewer, django_user_model, admin_user
):
    from django.contrib.auth.models import Group

    outsider = django_user_model.objects.create_user("otto", "otto@example.com", "pw-otto-1")
    outsider.groups.add(Group.objects.get(name="reviewer"))
    turn.deployment.allowed_users.set([reviewer])
    client.force_login(outsider)
    rid = turn.databricks_request_id
    span_id = retriever_span_id(turn)
    assert client.post(rate_url(turn), {"q_answer_correct": "positive"}).status_code == 404
    assert client.get(f"{rate_url(turn)}status/").status_code == 404
    doc = f"/requests/{rid}/spans/{span_id}/documents/0/rating/"
    assert client.post(doc, {"relevance": "positive"}).status_code == 404
    assert not Rating.objects.exists()


def test_rating_posts_need_the_csrf_token(turn, reviewer):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    assert client.post(rate_url(turn), {"q_answer_correct": "positive"}).status_code == 403
    assert not Rating.objects.exists()


def test_a_sinks_error_text_is_shown_escaped(client, turn, reviewer, admin_user):
    rating = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[{"ratings": {"answer_correct": {"value": "negative"}}}],
    )
    Delivery.objects.filter(rating=rating).update(
        status="failed", attempts=1, last_error='HTTP 400: <script>alert("x")</script>'
    )
    client.force_login(admin_user)
    page = client.get("/deliveries/").content.decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    client.force_login(reviewer)
    bar = client.get(f"{rate_url(turn)}status/").content.decode()
    assert "<script>alert" not in bar and "&lt;script&gt;" in bar


def test_the_chat_page_reads_ratings_once_not_per_answer(client, demo_deployment, reviewer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from agents.conversations import conversation_create
    from tests.support.turns import chat_turn

    conversation = conversation_create(deployment=demo_deployment, user=reviewer)
    client.force_login(reviewer)
    counts = []
    for turns in (2, 6):
        while conversation.turns.count() < turns:
            chat_turn(
                deployment=demo_deployment,
                user=reviewer,
                conversation=conversation,
                message="What is MLflow?",
                custom_inputs={},
            )
        with CaptureQueriesContext(connection) as queries:
            page = client.get(f"/chat/{demo_deployment.pk}/?c={conversation.pk}")
        assert page.content.decode().count('class="rating-bar') == turns
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_bar_asks_and_saves_every_input_type_and_expectation(
    client, deployment_factory, reviewer
):
    from feedback.models import EXPECTED_RESPONSE, LabelSchema
    from tests.feedback.conftest import label_schemas
    from tests.support.turns import logged_turn

    bot = deployment_factory(feedback_sink="none")
    LabelSchema.objects.get_or_create(
        name=EXPECTED_RESPONSE, defaults={"kind": "expectation", "input_type": "text"}
    )
    label_schemas(
        bot,
        {
            "name": "issues",
            "input_type": "categorical_list",
            "options": ["vague", "wrong", "rude"],
            "instruction": "Tick **every** problem. <script>alert(1)</script>",
        },
        {"name": "score", "input_type": "numeric", "min_value": 1, "max_value": 5, "step": 0.5},
        {"name": "effort", "input_type": "numeric", "min_value": 0, "max_value": 1},
        {"name": "sources", "input_type": "text_list", "max_count": 3},
        {"name": "facts", "kind": "expectation", "input_type": "text_list"},
    )
    label_schema_services.deployment_label_schemas_set(
        deployment=bot, names=["issues", "score", "effort", "sources", "facts", EXPECTED_RESPONSE]
    )
    turn = logged_turn(bot, reviewer)
    client.force_login(reviewer)
    page = client.get(f"/requests/{turn.databricks_request_id}/").content.decode()
    assert page.count('type="checkbox" name="q_issues"') == 3
    assert "in steps of 0.5<" in page
    assert 'name="q_score" value="" min="1.0" max="5.0" step="0.5"' in page
    assert 'name="q_effort" value="" min="0.0" max="1.0" step="any"' in page
    assert '<textarea id="q-sources-' in page and "One per line, at most 3." in page
    assert 'name="q_facts"' in page
    assert 'name="q_expected_response"' not in page  # the better-answer box asks it
    # The instruction, as sanitized markdown, folded away under the question it explains.
    assert "<summary>How to decide</summary>" in page
    assert "<p>Tick <strong>every</strong> problem." in page
    assert "<script>alert(1)" not in page

    response = client.post(
        rate_url(turn),
        {
            "q_issues": ["rude", "vague"],
            "q_score": "3.5",
            "q_sources": "doc 1\r\n\r\n  doc 2  \r\n",
            "q_facts": "Spans nest\nEach step is a span",
            "suggested_output": "Tracing records every step.",
        },
        **HTMX,
    )
    assert response.status_code == 200 and "Saved · " in response.content.decode()
    assert Rating.objects.get().text_assessment == {
        "ratings": {
            "issues": {"value": ["vague", "rude"]},
            "score": {"value": "3.5"},
            "sources": {"value": ["doc 1", "doc 2"]},
        },
        "expectations": {"facts": {"value": ["Spans nest", "Each step is a span"]}},
        "suggested_output": "Tracing records every step.",
    }
    # Shown again as saved: boxes ticked, a line per text.
    page = client.get(f"/requests/{turn.databricks_request_id}/").content.decode()
    assert 'name="q_issues" value="vague" checked' in page
    assert 'name="q_issues" value="rude" checked' in page
    assert 'name="q_issues" value="wrong">' in page
    assert 'value="3.5"' in page
    assert (
        "doc 1\ndoc 2</textarea>" in page and "Spans nest\nEach step is a span</textarea>" in page
    )

    # A value off the step is explained, what was typed stays, and nothing is saved.
    html = client.post(
        rate_url(turn), {"q_issues": ["wrong"], "q_score": "3.3"}, **HTMX
    ).content.decode()
    assert "must be 1 plus a multiple of 0.5" in html
    assert 'name="q_issues" value="wrong" checked' in html
    assert Rating.objects.count() == 1
