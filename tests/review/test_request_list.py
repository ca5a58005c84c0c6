"""The requests page: the request log as a filtered table, newest first, paged by a keyset."""

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from agents.conversations import conversation_create
from agents.models import RequestLog
from feedback import services as feedback_services
from tests.support.turns import logged_turn

pytestmark = pytest.mark.django_db
PAGE = "/requests/"
THUMBS_DOWN = [{"ratings": {"answer_correct": {"value": "negative"}}}]
THUMBS_UP = [{"ratings": {"answer_correct": {"value": "positive"}}}]


def turn_at(deployment, user, minutes_ago: float, **fields) -> RequestLog:
    turn = logged_turn(deployment, user, **fields)
    when = timezone.now() - timedelta(minutes=minutes_ago)
    RequestLog.objects.filter(pk=turn.pk).update(created_at=when)
    turn.created_at = when
    return turn


def shown_ids(html: str) -> list[str]:
    return re.findall(r'href="/requests/([^/"]+)/"', html)


def get(client, **params) -> str:
    response = client.get(PAGE, params)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


@pytest.fixture
def bot(deployment_factory):
    return deployment_factory(display_name="Bot A")


def test_it_requires_a_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_reviewers_see_every_turn_newest_first_and_stakeholders_their_own(
    client, bot, reviewer, stakeholder, stranger
):
    older = turn_at(bot, reviewer, 10)
    newer = turn_at(bot, stakeholder, 1)
    client.force_login(reviewer)
    assert shown_ids(get(client)) == [newer.databricks_request_id, older.databricks_request_id]
    client.force_login(stakeholder)
    html = get(client)
    assert shown_ids(html) == [newer.databricks_request_id]
    assert 'name="rating"' not in html and 'name="reviewer"' not in html
    client.force_login(stranger)
    assert shown_ids(get(client)) == []


def test_filters_by_deployment_status_text_latency_and_dates(
    client, bot, reviewer, deployment_factory
):
    other = deployment_factory(display_name="Bot B")
    answered = turn_at(bot, reviewer, 5, execution_time_ms=900, response="Spans and traces.")
    failed = turn_at(bot, reviewer, 4, error="The agent timed out.", status_code=504)
    cut = turn_at(bot, reviewer, 3, incomplete=True, error="Stopped.")
    elsewhere = turn_at(other, reviewer, 2, request="Where is the Lakehouse?")
    last_week = turn_at(bot, reviewer, 60 * 24 * 7, execution_time_ms=5)
    client.force_login(reviewer)

    def ids(**params):
        return set(shown_ids(get(client, **params)))

    assert ids(deployment=other.pk) == {elsewhere.databricks_request_id}
    assert ids(status="answered", deployment=bot.pk) == {
        answered.databricks_request_id,
        last_week.databricks_request_id,
    }
    assert ids(status="failed") == {failed.databricks_request_id}
    assert ids(status="incomplete") == {cut.databricks_request_id}
    assert ids(q="lakehouse") == {elsewhere.databricks_request_id}  # in the question
    assert ids(q="spans and") == {answered.databricks_request_id}  # in the answer
    assert ids(min_ms=500, max_ms=1000) == {answered.databricks_request_id}
    today = timezone.localdate()
    assert last_week.databricks_request_id not in ids(since=today.isoformat())
    assert ids(until=(today - timedelta(days=6)).isoformat()) == {last_week.databricks_request_id}


def test_filters_by_conversation(client, bot, reviewer):
    conversation = conversation_create(deployment=bot, user=reviewer)
    inside = turn_at(bot, reviewer, 2, conversation=conversation)
    turn_at(bot, reviewer, 1)
    client.force_login(reviewer)
    assert shown_ids(get(client, conversation=str(conversation.pk))) == [
        inside.databricks_request_id
    ]


def test_rating_filters_apply_to_one_current_rating(
    client, bot, reviewer, admin_user, django_user_model
):
    rita_down = turn_at(bot, reviewer, 4)
    rita_up_admin_down = turn_at(bot, reviewer, 3)
    changed_mind = turn_at(bot, reviewer, 2)
    unrated = turn_at(bot, reviewer, 1)
    rate = feedback_services.rating_create
    rate(turn=rita_down, reviewer=reviewer, text_assessments=THUMBS_DOWN)
    rate(turn=rita_up_admin_down, reviewer=reviewer, text_assessments=THUMBS_UP)
    rate(turn=rita_up_admin_down, reviewer=admin_user, text_assessments=THUMBS_DOWN)
    rate(turn=changed_mind, reviewer=reviewer, text_assessments=THUMBS_DOWN)
    rate(turn=changed_mind, reviewer=reviewer, text_assessments=THUMBS_UP)  # the current one
    client.force_login(reviewer)

    def ids(**params):
        return set(shown_ids(get(client, **params)))

    ids_of = {t.pk: t.databricks_request_id for t in RequestLog.objects.all()}
    assert ids(rated="no") == {ids_of[unrated.pk]}
    assert ids(rated="yes") == {ids_of[t.pk] for t in (rita_down, rita_up_admin_down, changed_mind)}
    assert ids(rating="answer_correct:negative") == {
        ids_of[rita_down.pk],
        ids_of[rita_up_admin_down.pk],
    }
    # Rita's own negative ratings only: her positive one on the turn the admin disliked is not.
    assert ids(rating="answer_correct:negative", reviewer=reviewer.username) == {
        ids_of[rita_down.pk]
    }
    assert ids(reviewer=admin_user.username) == {ids_of[rita_up_admin_down.pk]}
    html = get(client, rating="answer_correct:negative")
    assert "2 ratings" in html and "negative, positive" in html


def test_pages_follow_a_keyset_without_gaps_or_repeats(client, bot, reviewer):
    same_moment = timezone.now() - timedelta(minutes=30)
    turns = [logged_turn(bot, reviewer) for _ in range(120)]
    RequestLog.objects.filter(pk__in=[t.pk for t in turns[:60]]).update(created_at=same_moment)
    client.force_login(reviewer)
    seen, params = [], {"deployment": bot.pk}
    for _ in range(4):
        html = get(client, **params)
        seen += shown_ids(html)
        more = re.search(r'href="\?([^"]*after=[^"]*)">Older requests', html)
        if not more:
            break
        params = dict(pair.split("=", 1) for pair in more.group(1).replace("&amp;", "&").split("&"))
    assert len(seen) == 120 and len(set(seen)) == 120
    expected = RequestLog.objects.order_by("-created_at", "-pk").values_list(
        "databricks_request_id", flat=True
    )
    assert seen == list(expected)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"since": "2026-13-01"}, "Enter a valid date"),
        ({"since": "2026-05-02", "until": "2026-05-01"}, "end date is before the start date"),
        ({"min_ms": "900", "max_ms": "10"}, "highest latency is below the lowest"),
        ({"after": "not-a-cursor"}, "page link is damaged"),
        ({"rating": "answer correct"}, "question:value"),
        ({"deployment": "99999"}, "Select a valid choice"),
        ({"conversation": "nope"}, "valid UUID"),
        ({"until": "9999-12-31"}, "Pick a day between 1970-01-01 and 9998-12-31"),
    ],
)
def test_bad_filters_are_explained_with_a_400(client, bot, reviewer, params, message):
    turn_at(bot, reviewer, 1)
    client.force_login(reviewer)
    response = client.get(PAGE, params)
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html and "Clear every filter" in html
    assert shown_ids(html) == []


def test_htmx_gets_only_the_results_and_agent_text_is_escaped(client, bot, reviewer):
    turn_at(bot, reviewer, 1, response="<script>alert('x')</script> done")
    client.force_login(reviewer)
    html = client.get(PAGE, {"q": "done"}, HTTP_HX_REQUEST="true").content.decode()
    assert html.lstrip().startswith('<div id="request-results">')
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html


def test_active_filters_show_as_chips_that_remove_themselves(client, bot, reviewer):
    turn_at(bot, reviewer, 1)
    client.force_login(reviewer)
    html = get(client, status="failed", q="why")
    assert "Status: failed" in html and "Search: why" in html
    assert 'href="?q=why" aria-label="Remove the filter Status"' in html


def test_a_deployment_the_user_may_not_see_is_not_a_choice(
    client, bot, stakeholder, deployment_factory, django_user_model
):
    private = deployment_factory(display_name="Private")
    private.allowed_users.set([django_user_model.objects.create_user(str(uuid.uuid4())[:8])])
    client.force_login(stakeholder)
    assert client.get(PAGE, {"deployment": private.pk}).status_code == 400


def test_htmx_gets_bad_filters_explained_with_a_200_so_it_swaps_them_in(client, bot, reviewer):
    """htmx 2 swaps no 4xx answer: with a 400 the old rows would stay, looking filtered."""
    turn_at(bot, reviewer, 1)
    client.force_login(reviewer)
    bad = {"min_ms": "900", "max_ms": "10"}
    response = client.get(PAGE, bad, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="request-results")
    assert response.status_code == 200
    html = response.content.decode()
    assert "highest latency is below the lowest" in html and shown_ids(html) == []


def test_long_questions_and_answers_are_cut_with_an_ellipsis(client, bot, reviewer):
    answer = "Spans nest. " * 40 + "THE-END"
    turn_at(bot, reviewer, 1, request="Short question?", response=answer)
    client.force_login(reviewer)
    html = get(client)
    assert "Short question?</td>" in html
    assert "Spans nest. Spans nest." in html and "…" in html
    assert "THE-END" not in html
