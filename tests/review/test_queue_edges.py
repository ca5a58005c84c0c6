"""Edges of the queue: what a reviewer may not see stays hidden, a lease lost to another
reviewer is not handed back."""

import pytest

from feedback import services as feedback_services
from feedback.models import LabelSchema, Rating
from review import queue, services
from tests.review.sessions_support import label, make_reviewer, make_session
from tests.support.turns import logged_turn

pytestmark = pytest.mark.django_db


def test_disagreements_leave_out_items_of_deployments_i_may_not_see(
    client, api_client, admin_user, deployment_factory, reviewer, django_user_model
):
    bot = deployment_factory(display_name="Bot")
    secret = deployment_factory(display_name="Secret")
    carol = make_reviewer(django_user_model, "carol")
    secret.allowed_users.set([carol])
    session, _ = make_session(admin_user, bot, [reviewer, carol], turns=0, per_item=2)
    services.session_save(
        user=admin_user, session=session, data={"deployments": [bot.pk, secret.pk]}
    )
    hidden = logged_turn(secret, admin_user, request="The secret merger question")
    services.items_add(session=session, user=admin_user, turns=[hidden])
    item = session.items.get()
    queue.item_label_save(item=item, reviewer=carol, text_assessment=label("positive"))
    queue.item_label_save(item=item, reviewer=admin_user, text_assessment=label("negative"))

    # Rita works in the session but may not see the Secret deployment: item_get says 404 ...
    api_client.force_authenticate(reviewer)
    base = f"/api/v1/review-sessions/{session.pk}/"
    assert api_client.get(f"{base}items/{item.pk}/").status_code == 404
    # ... so the disagreements must not show it either (request id, labels, question).
    assert api_client.get(f"{base}disagreements/").json() == []
    client.force_login(reviewer)
    html = client.get(f"/review/sessions/{session.pk}/").content.decode()
    assert "The secret merger question" not in html


def test_next_does_not_return_a_held_item_that_another_reviewer_took_meanwhile(
    monkeypatch, admin_user, deployment_factory, reviewer, django_user_model
):
    from datetime import timedelta

    from django.utils import timezone

    from review.models import ReviewSlot

    bob = make_reviewer(django_user_model, "bob")
    bot = deployment_factory(display_name="Bot")
    session, _turns = make_session(admin_user, bot, [reviewer, bob], turns=2)
    mine = queue.item_next(session=session, reviewer=reviewer)
    slot = ReviewSlot.objects.get(item=mine)
    ReviewSlot.objects.filter(pk=slot.pk).update(lease_until=timezone.now() - timedelta(1))
    real_lease = queue.lease

    def bob_claims_first():
        # Bob's Next claims the expired slot between Rita's read of it and her renewal.
        ReviewSlot.objects.filter(pk=slot.pk).update(
            reviewer=bob, lease_until=timezone.now() + real_lease()
        )
        monkeypatch.setattr(queue, "lease", real_lease)
        return real_lease()

    monkeypatch.setattr(queue, "lease", bob_claims_first)
    offered = queue.item_next(session=session, reviewer=reviewer)
    assert ReviewSlot.objects.get(pk=slot.pk).reviewer == bob
    assert offered != mine  # Bob holds it now: Rita gets the next item instead
    assert ReviewSlot.objects.get(item=offered).reviewer == reviewer


def test_labels_of_two_sessions_and_the_chat_rating_keep_each_other(
    admin_user, deployment_factory, reviewer
):
    bot = deployment_factory(display_name="Bot")
    first, turns = make_session(admin_user, bot, [reviewer], turns=1)  # answer_correct, tone
    LabelSchema.objects.create(name="grounded", title="Grounded?", input_type="thumbs")
    second = services.session_save(
        user=admin_user,
        data={
            "name": "Grounding",
            "label_schemas": ["grounded"],
            "deployments": [bot.pk],
            "assigned_users": [reviewer.get_username()],
        },
    )
    services.items_add(session=second, user=admin_user, turns=turns)
    feedback_services.rating_change(  # the chat page's better answer
        turn=turns[0],
        reviewer=reviewer,
        text_assessment={"suggested_output": "Say that a span is one step."},
    )
    queue.item_label_save(
        item=first.items.get(), reviewer=reviewer, text_assessment=label("positive", "rude")
    )
    queue.item_label_save(
        item=second.items.get(),
        reviewer=reviewer,
        text_assessment={"ratings": {"grounded": {"value": "negative"}}},
    )
    current = Rating.objects.get(request=turns[0], reviewer=reviewer, is_current=True)
    assert current.text_assessment == {
        "ratings": {
            "answer_correct": {"value": "positive"},
            "tone": {"value": "rude"},
            "grounded": {"value": "negative"},
        },
        "suggested_output": "Say that a span is one step.",
    }
    # The chat's rating bar asks answer_correct only: the sessions' labels stay.
    feedback_services.rating_change(
        turn=turns[0],
        reviewer=reviewer,
        text_assessment={"ratings": {"answer_correct": {"value": "negative"}}},
    )
    current = Rating.objects.get(request=turns[0], reviewer=reviewer, is_current=True)
    assert current.text_assessment["ratings"] == {
        "answer_correct": {"value": "negative"},
        "tone": {"value": "rude"},
        "grounded": {"value": "negative"},
    }
    assert "suggested_output" not in current.text_assessment  # the bar's box was left empty


def test_failed_turns_are_not_added_as_items(admin_user, deployment_factory, reviewer):
    bot = deployment_factory(display_name="Bot")
    session, _ = make_session(admin_user, bot, [reviewer], turns=0, saved_filter={})
    failed = logged_turn(bot, admin_user, error="The agent timed out.", status_code=504)
    answered = logged_turn(bot, admin_user)
    assert services.items_add(session=session, user=admin_user, turns=[failed, answered]) == 1
    later_failed = logged_turn(bot, admin_user, error="HTTP 500", status_code=502)
    later = logged_turn(bot, admin_user)
    assert services.session_pull_new(session) == 1
    assert {i.turn for i in session.items.all()} == {answered, later}
    assert later_failed not in {i.turn for i in session.items.all()}
