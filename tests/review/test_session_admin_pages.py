"""The admin's session pages: create and change a session, and "Add to a review session" on
the requests page (ticked rows, or every turn that matches)."""

import pytest
from django.core.exceptions import ValidationError

from review import services
from review.models import ReviewItem, ReviewSession, ReviewSlot
from tests.review.sessions_support import make_session
from tests.support.turns import logged_turn

pytestmark = pytest.mark.django_db
NEW = "/review/sessions/new/"
ADD = "/review/sessions/add-turns/"


def form(bot, reviewer, **extra) -> dict:
    return {
        "name": "Launch review",
        "instructions": "Be **strict**.",
        "label_schemas": ["answer_correct"],
        "deployments": [str(bot.pk)],
        "assigned_users": [reviewer.get_username()],
        "reviewers_per_item": "2",
        "state": "open",
        **extra,
    }


def test_an_admin_creates_a_session_from_the_form(client, admin_user, bot, reviewer):
    client.force_login(admin_user)
    assert client.get(NEW).status_code == 200
    response = client.post(NEW, form(bot, reviewer))
    session = ReviewSession.objects.get()
    assert response.status_code == 302
    assert response["Location"].startswith(f"/review/sessions/{session.pk}/")
    assert (session.name, session.reviewers_per_item, session.created_by) == (
        "Launch review",
        2,
        admin_user,
    )
    assert list(session.assigned_users.all()) == [reviewer]
    assert session.saved_filter is None


def test_a_form_with_errors_says_so_and_saves_nothing(client, admin_user, bot, reviewer):
    client.force_login(admin_user)
    response = client.post(NEW, form(bot, reviewer, reviewers_per_item="0", label_schemas=[]))
    assert response.status_code == 400
    body = response.content.decode()
    assert "This field is required" in body
    assert "greater than or equal to 1" in body
    assert not ReviewSession.objects.exists()


def test_only_admins_reach_the_session_pages(client, reviewer, bot):
    client.force_login(reviewer)
    assert client.get(NEW).status_code == 403
    assert client.post(ADD, {"session": "1", "turn": ["x"]}).status_code == 403


def test_keep_adding_new_matching_turns(client, admin_user, bot, reviewer):
    logged_turn(bot, admin_user, request="old refund question")
    client.force_login(admin_user)
    client.post(NEW, form(bot, reviewer, keep_adding="on", saved_filter="q=refund&status=answered"))
    session = ReviewSession.objects.get()
    assert session.saved_filter == {"q": "refund", "status": "answered"}
    assert session.items.count() == 1  # what matched when it was made
    logged_turn(bot, admin_user, request="a new refund question")
    logged_turn(bot, admin_user, request="about shipping")
    assert services.session_pull_new(session) == 1
    assert session.items.count() == 2
    assert ReviewSlot.objects.filter(session=session).count() == 4  # two reviewers per item


def test_add_ticked_rows_and_all_that_match(client, admin_user, bot, reviewer):
    session, _turns = make_session(admin_user, bot, [reviewer], turns=0)
    shown = [logged_turn(bot, admin_user, request=f"refund {i}") for i in range(3)]
    other = logged_turn(bot, admin_user, request="shipping")
    client.force_login(admin_user)
    page = client.get("/requests/?q=refund").content.decode()
    assert 'form="add-to-session"' in page and "Add to a review session" in page
    response = client.post(
        ADD,
        {
            "session": session.pk,
            "scope": "selected",
            "filters": "q=refund",
            "turn": [shown[0].databricks_request_id],
        },
    )
    assert response.status_code == 302 and response["Location"] == "/requests/?q=refund"
    assert [i.turn for i in session.items.all()] == [shown[0]]
    client.post(ADD, {"session": session.pk, "scope": "all", "filters": "q=refund"})
    assert {i.turn for i in session.items.all()} == set(shown)
    assert other not in {i.turn for i in session.items.all()}
    assert ReviewItem.objects.filter(session=session).count() == 3  # no turn twice


def test_adding_to_a_closed_session_or_a_foreign_turn_adds_nothing(
    client, admin_user, bot, reviewer, deployment_factory
):
    session, _ = make_session(admin_user, bot, [reviewer], turns=0)
    elsewhere = logged_turn(deployment_factory(display_name="Other"), admin_user)
    client.force_login(admin_user)
    response = client.post(
        ADD, {"session": session.pk, "turn": [elsewhere.databricks_request_id]}, follow=True
    )
    assert "not of this session&#x27;s deployments" in response.content.decode()
    session.state = "closed"
    session.save()
    mine = logged_turn(bot, admin_user)
    response = client.post(
        ADD, {"session": session.pk, "turn": [mine.databricks_request_id]}, follow=True
    )
    assert "This session is closed" in response.content.decode()
    assert not session.items.exists()


def test_a_second_reviewer_cannot_be_added_to_items_once_there_are_items(admin_user, bot):
    session, _ = make_session(admin_user, bot, [], turns=1)
    with pytest.raises(ValidationError, match="cannot change now"):
        services.session_save(user=admin_user, session=session, data={"reviewers_per_item": 2})
