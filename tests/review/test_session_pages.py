"""The review pages: my sessions, a session, Next, focus mode's label form and skip, and an
admin settling a disagreement; with every way in that must be refused."""

import re
from html import unescape

import pytest

from feedback.models import LabelSchema, Rating
from review import queue, services
from review.models import ReviewItem, ReviewSkip, ReviewSlot, SlotState
from tests.review.sessions_support import label, make_session

pytestmark = pytest.mark.django_db


def page_of(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.content[:500]
    return unescape(response.content.decode())


def item_url(session, item) -> str:
    return f"/review/sessions/{session.pk}/items/{item.pk}/"


def checked(html: str, name: str) -> list[str]:
    """The values of the checked radios or checkboxes named `name`."""
    inputs = re.findall(rf'<input [^>]*name="{name}"[^>]*>', html)
    return [re.search(r'value="([^"]*)"', i).group(1) for i in inputs if " checked" in i]


def test_home_sends_reviewers_to_their_sessions_and_others_to_the_deployments(
    client, reviewer, admin_user, stakeholder
):
    for user, where in ((reviewer, "/review/"), (admin_user, "/deployments/")):
        client.force_login(user)
        assert client.get("/").url == where
    client.force_login(stakeholder)
    assert client.get("/").url == "/deployments/"
    assert client.get("/review/").status_code == 403


def test_the_review_page_lists_my_sessions_open_first_with_progress(
    client, admin_user, bot, reviewer, bob
):
    mine, _ = make_session(admin_user, bot, [reviewer], turns=2, name="Mine, open")
    closed, _ = make_session(admin_user, bot, [reviewer], turns=1, name="Mine, closed")
    closed.state = "closed"
    closed.save()
    make_session(admin_user, bot, [bob], turns=1, name="Bob's only")
    client.force_login(reviewer)
    html = page_of(client, "/review/")
    assert "Bob's only" not in html
    assert html.index("Mine, open") < html.index("Closed") < html.index("Mine, closed")
    assert "0 / 2" in html and ">Start<" in html
    item = queue.item_next(session=mine, reviewer=reviewer)
    queue.item_label_save(item=item, reviewer=reviewer, text_assessment=label("positive"))
    html = page_of(client, "/review/")
    assert "1 / 2" in html and "1 done" in html and ">Continue<" in html


def test_the_session_page_shows_instructions_schemas_and_progress(
    client, admin_user, bot, reviewer, bob
):
    session, _ = make_session(
        admin_user,
        bot,
        [reviewer],
        turns=1,
        instructions="Judge **tone** first.<script>alert(1)</script>",
    )
    client.force_login(reviewer)
    raw = client.get(f"/review/sessions/{session.pk}/").content.decode()
    assert "<strong>tone</strong>" in raw and "<script>alert" not in raw
    html = unescape(raw)
    assert "Is this response correct for your question?" in html and "Tone?" in html
    assert "0 / 1" in html
    client.force_login(bob)  # not assigned: whether it exists is not his to know
    page_of(client, f"/review/sessions/{session.pk}/", 404)
    assert client.post(f"/review/sessions/{session.pk}/next/").status_code == 404
    page_of(client, "/review/sessions/999999/", 404)


def test_next_opens_my_item_and_says_when_nothing_is_left(client, admin_user, bot, reviewer):
    session, turns = make_session(admin_user, bot, [reviewer], turns=1)
    client.force_login(reviewer)
    response = client.post(f"/review/sessions/{session.pk}/next/")
    item = ReviewItem.objects.get(turn=turns[0])
    assert response.url == item_url(session, item)
    html = page_of(client, response.url)
    assert 'id="item-heading"' in html and "Question 0" in html
    assert 'name="q_answer_correct"' in html and 'name="q_tone"' in html
    queue.item_label_save(item=item, reviewer=reviewer, text_assessment=label("positive"))
    response = client.post(f"/review/sessions/{session.pk}/next/", follow=True)
    assert response.redirect_chain[-1][0] == f"/review/sessions/{session.pk}/"
    assert "Nothing left for you" in response.content.decode()


def test_saving_a_label_goes_to_the_next_item_and_shows_it_again_later(
    client, admin_user, bot, reviewer
):
    session, turns = make_session(admin_user, bot, [reviewer], turns=2)
    client.force_login(reviewer)
    first = ReviewItem.objects.get(turn=turns[0])
    response = client.post(
        item_url(session, first),
        {"q_answer_correct": "negative", "q_tone": "rude", "free_text_comment": "Too curt."},
    )
    second = ReviewItem.objects.get(turn=turns[1])
    assert response.url == item_url(session, second)
    rating = Rating.objects.get(request=turns[0], reviewer=reviewer)
    assert rating.text_assessment == {
        "ratings": {"answer_correct": {"value": "negative"}, "tone": {"value": "rude"}},
        "free_text_comment": "Too curt.",
    }
    html = page_of(client, item_url(session, first))  # back to it: pre-filled, and linked
    assert checked(html, "q_answer_correct") == ["negative"] and checked(html, "q_tone") == ["rude"]
    assert "Too curt.</textarea>" in html
    assert f'id="next-item" rel="next" href="{item_url(session, second)}"' in html
    html = page_of(client, item_url(session, second))
    assert f'id="prev-item" rel="prev" href="{item_url(session, first)}"' in html
    # Changing it is a new version; the slot stays done once.
    client.post(item_url(session, first), {"q_answer_correct": "positive", "q_tone": "ok"})
    assert Rating.objects.filter(request=turns[0], reviewer=reviewer).count() == 2
    assert ReviewItem.objects.get(pk=first.pk).done_count == 1


def test_a_refused_label_comes_back_as_typed_with_a_400_and_nothing_saved(
    client, admin_user, bot, reviewer
):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    LabelSchema.objects.filter(name="tone").update(required=True)
    item = queue.item_next(session=session, reviewer=reviewer)
    client.force_login(reviewer)
    typed = {"q_answer_correct": "negative", "free_text_comment": "\nKeep this, exactly.  "}
    response = client.post(item_url(session, item), typed)
    assert response.status_code == 400
    html = unescape(response.content.decode())
    assert "Not saved" in html and "“Tone?”: required" in html
    assert checked(html, "q_answer_correct") == ["negative"]
    assert ">\n\nKeep this, exactly.  </textarea>" in html  # the leading newline survives too
    assert not Rating.objects.exists()
    # Through htmx only the errors come back: the inputs on screen stay as typed.
    response = client.post(item_url(session, item), typed, headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert "required" in response.content.decode() and "<textarea" not in response.content.decode()
    assert not Rating.objects.exists()


def test_every_input_type_and_comment_is_saved_from_the_form(client, admin_user, bot, reviewer):
    for name, fields in {
        "score": {"input_type": "numeric", "min_value": 1, "max_value": 5, "step": 0.5},
        "topics": {"input_type": "categorical_list", "options": ["a", "b", "c"]},
        "why_not": {"input_type": "text", "enable_comment": True},
        "missing": {"input_type": "text_list", "kind": "expectation"},
    }.items():
        LabelSchema.objects.create(name=name, title=name.title(), **fields)
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    LabelSchema.objects.filter(name="tone").update(enable_comment=True)
    names = ["answer_correct", "tone", "score", "topics", "why_not", "missing", "expected_response"]
    services.session_save(user=admin_user, session=session, data={"label_schemas": names})
    item = ReviewItem.objects.get(session=session)
    client.force_login(reviewer)
    html = page_of(client, item_url(session, item))
    assert 'type="number"' in html and 'step="0.5"' in html and 'type="checkbox"' in html
    assert 'id="f-better"' in html and 'name="why_tone"' in html
    assert "<legend>Is this response correct for your question?" in html
    response = client.post(
        item_url(session, item),
        {
            "q_answer_correct": "positive",
            "q_tone": "ok",
            "why_tone": "Polite enough.",
            "q_score": "4.5",
            "q_topics": ["c", "a"],
            "q_why_not": "Fine.",
            "q_missing": "first\n\nsecond\n",
            "q_expected_response": "A better answer.",
        },
    )
    assert response.status_code == 302, response.content[:800]
    text = Rating.objects.get(reviewer=reviewer).text_assessment
    assert text["ratings"] == {
        "answer_correct": {"value": "positive"},
        "tone": {"value": "ok", "rationale": "Polite enough."},
        "score": {"value": "4.5"},
        "topics": {"value": ["a", "c"]},
        "why_not": {"value": "Fine."},
    }
    assert text["expectations"] == {"missing": {"value": ["first", "second"]}}
    assert text["suggested_output"] == "A better answer."
    html = page_of(client, item_url(session, item))
    assert checked(html, "q_topics") == ["a", "c"] and 'value="4.5"' in html
    assert ">\nfirst\nsecond</textarea>" in html and "A better answer.</textarea>" in html


def test_a_closed_session_is_read_only_and_refuses_labels(client, admin_user, bot, reviewer):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    item = queue.item_next(session=session, reviewer=reviewer)
    session.state = "closed"
    session.save()
    client.force_login(reviewer)
    html = page_of(client, item_url(session, item))
    assert "This session is closed" in html
    assert '<fieldset class="label-fields" disabled>' in html and "Save and next" not in html
    response = client.post(
        item_url(session, item), {"q_answer_correct": "positive", "free_text_comment": "Mine"}
    )
    assert response.status_code == 400
    assert "closed" in response.content.decode() and "Mine</textarea>" in response.content.decode()
    assert not Rating.objects.exists()
    response = client.post(f"/review/sessions/{session.pk}/next/", follow=True)
    assert "closed" in response.content.decode()
    assert client.post(item_url(session, item) + "skip/").status_code == 400
    assert not ReviewSkip.objects.exists()


def test_items_outside_my_sessions_or_deployments_are_not_found(
    client, admin_user, bot, reviewer, bob, deployment_factory
):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    other, _ = make_session(admin_user, bot, [bob], turns=1)
    item = ReviewItem.objects.get(session=session)
    client.force_login(bob)  # assigned to `other` only
    page_of(client, item_url(session, item), 404)
    assert client.post(item_url(session, item), {"q_answer_correct": "positive"}).status_code == 404
    page_of(client, f"/review/sessions/{other.pk}/items/{item.pk}/", 404)  # not that session's
    hidden = deployment_factory(display_name="Bob may not see it")
    hidden.allowed_users.set([admin_user])
    secret, _ = make_session(admin_user, hidden, [bob], turns=1)
    page_of(client, item_url(secret, ReviewItem.objects.get(session=secret)), 404)
    assert not Rating.objects.exists()


def test_skip_gives_the_item_back_and_goes_on(client, admin_user, bot, reviewer):
    session, turns = make_session(admin_user, bot, [reviewer], turns=2)
    item = queue.item_next(session=session, reviewer=reviewer)
    client.force_login(reviewer)
    response = client.post(item_url(session, item) + "skip/", {"reason": "Not my field"})
    assert ReviewSkip.objects.get(item=item, reviewer=reviewer).reason == "Not my field"
    assert response.url == item_url(session, ReviewItem.objects.get(turn=turns[1]))
    assert ReviewSlot.objects.get(item=item).state == SlotState.OPEN
    html = page_of(client, item_url(session, item))
    assert "You skipped this item" in html
    # A labelled item is not skipped: its label is changed instead.
    second = ReviewItem.objects.get(turn=turns[1])
    queue.item_label_save(item=second, reviewer=reviewer, text_assessment=label("positive"))
    response = client.post(item_url(session, second) + "skip/")
    assert response.status_code == 400 and "change your label" in response.content.decode()


def test_an_admin_settles_a_disagreement_and_others_may_not(client, admin_user, bot, reviewer, bob):
    session, _ = make_session(admin_user, bot, [reviewer, bob], turns=1, per_item=2)
    item = queue.item_next(session=session, reviewer=reviewer)
    queue.item_label_save(item=item, reviewer=reviewer, text_assessment=label("positive"))
    queue.item_label_save(item=item, reviewer=bob, text_assessment=label("negative", "rude"))
    client.force_login(reviewer)
    html = page_of(client, f"/review/sessions/{session.pk}/")
    assert "100 %" in html and "Cohen" in html and "Krippendorff" in html
    assert f'id="item-{item.pk}"' in html and "Settle with a final label" not in html
    settle = item_url(session, item) + "settle/"
    assert client.post(settle, {"q_answer_correct": "negative", "q_tone": "ok"}).status_code == 403
    assert not Rating.objects.filter(reviewer=None).exists()

    client.force_login(admin_user)
    html = page_of(client, f"/review/sessions/{session.pk}/")
    assert "Settle with a final label" in html
    row = html[html.index(f'id="item-{item.pk}"') :]
    assert "rita-reviewer" in row and "bob" in row and "negative" in row and "rude" in row
    response = client.post(settle, {"q_answer_correct": "negative", "q_tone": "grumpy"})
    assert response.status_code == 400 and "Not settled" in response.content.decode()
    assert checked(unescape(response.content.decode()), "q_answer_correct") == ["negative"]
    response = client.post(settle, {"q_answer_correct": "negative", "q_tone": "ok"})
    assert response.url.endswith(f"#item-{item.pk}")
    consensus = Rating.objects.get(reviewer=None)
    assert consensus.source_id == "consensus:alice-admin@example.com"
    html = page_of(client, f"/review/sessions/{session.pk}/")
    assert "Settled by alice-admin" in html and "Final label" in html
