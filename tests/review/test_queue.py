"""The reviewer's queue: Next, leases, labels as rating versions, skips, closed sessions,
unassigned reviewers and settling a disagreement."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from feedback import services as feedback_services
from feedback.models import Rating
from review import queue, session_selectors
from review.models import ReviewSlot, SlotState
from tests.review.sessions_support import label, make_session

pytestmark = pytest.mark.django_db


def test_next_hands_items_oldest_first_and_never_the_same_one_twice(admin_user, bot, reviewer, bob):
    session, turns = make_session(admin_user, bot, [reviewer, bob], turns=3)
    first = queue.item_next(session=session, reviewer=reviewer)
    assert first.turn == turns[0]
    assert queue.item_next(session=session, reviewer=reviewer) == first  # held, not a new one
    second = queue.item_next(session=session, reviewer=bob)
    assert second.turn == turns[1]


def test_a_label_is_a_rating_version_and_the_queue_moves_on(admin_user, bot, reviewer):
    session, turns = make_session(admin_user, bot, [reviewer], turns=2)
    item = queue.item_next(session=session, reviewer=reviewer)
    queue.item_label_save(item=item, reviewer=reviewer, text_assessment=label("positive"))
    assert queue.item_next(session=session, reviewer=reviewer).turn == turns[1]
    # Going back and changing it: a new version, still one done slot.
    queue.item_label_save(item=item, reviewer=reviewer, text_assessment=label("negative"))
    ratings = Rating.objects.filter(request=turns[0], reviewer=reviewer)
    assert ratings.count() == 2
    assert ratings.get(is_current=True).text_assessment["ratings"]["answer_correct"] == {
        "value": "negative"
    }
    progress = session_selectors.session_progress(session, reviewer)
    assert (progress.labels_done, progress.labels_needed, progress.mine_done) == (1, 2, 1)


def test_an_abandoned_claim_returns_after_its_lease(admin_user, bot, reviewer, bob):
    session, _turns = make_session(admin_user, bot, [reviewer, bob], turns=1)
    item = queue.item_next(session=session, reviewer=reviewer)
    assert queue.item_next(session=session, reviewer=bob) is None
    ReviewSlot.objects.filter(item=item).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert queue.item_next(session=session, reviewer=bob) == item


def test_two_reviewers_per_item_each_get_it_once(admin_user, bot, reviewer, bob):
    session, _turns = make_session(admin_user, bot, [reviewer, bob], turns=1, per_item=2)
    item = queue.item_next(session=session, reviewer=reviewer)
    assert queue.item_next(session=session, reviewer=bob) == item
    queue.item_label_save(item=item, reviewer=reviewer, text_assessment=label("positive"))
    queue.item_label_save(item=item, reviewer=bob, text_assessment=label("negative", "rude"))
    assert queue.item_next(session=session, reviewer=reviewer) is None
    progress = session_selectors.session_progress(session, reviewer)
    assert (progress.items_done, progress.percent) == (1, 100)
    [found] = session_selectors.session_disagreements(session, admin_user)
    assert found.schemas == ["answer_correct", "tone"]
    [correct, _tone] = session_selectors.session_agreement(session)
    assert correct.agreement.items == 1
    assert correct.agreement.figure("percent_agreement").value == 0.0


def test_skip_gives_the_item_to_someone_else_and_not_back(admin_user, bot, reviewer, bob):
    session, turns = make_session(admin_user, bot, [reviewer, bob], turns=2)
    item = queue.item_next(session=session, reviewer=reviewer)
    queue.item_skip(item=item, reviewer=reviewer, reason="Not my field")
    assert queue.item_next(session=session, reviewer=reviewer).turn == turns[1]
    assert queue.item_next(session=session, reviewer=bob) == item


def test_required_labels_and_wrong_values_are_refused_and_nothing_is_saved(
    admin_user, bot, reviewer
):
    session, _turns = make_session(admin_user, bot, [reviewer], turns=1)
    schema = session.label_schemas.get(name="tone")
    schema.required = True
    schema.save()
    item = queue.item_next(session=session, reviewer=reviewer)
    with pytest.raises(ValidationError, match="Required: tone"):
        queue.item_label_save(
            item=item,
            reviewer=reviewer,
            text_assessment={"ratings": {"answer_correct": {"value": "positive"}}},
        )
    with pytest.raises(ValidationError, match="must be one of"):
        queue.item_label_save(item=item, reviewer=reviewer, text_assessment=label("positive", "x"))
    assert not Rating.objects.exists()
    assert ReviewSlot.objects.get(item=item).state == SlotState.CLAIMED


def test_unassigned_reviewers_and_closed_sessions_are_refused(admin_user, bot, reviewer, bob):
    session, _turns = make_session(admin_user, bot, [reviewer], turns=1)
    with pytest.raises(PermissionDenied):
        queue.item_next(session=session, reviewer=bob)
    session.state = "closed"
    session.save()
    with pytest.raises(ValidationError, match="closed"):
        queue.item_next(session=session, reviewer=reviewer)
    assert not ReviewSlot.objects.filter(reviewer__isnull=False).exists()


def test_an_admin_settles_a_disagreement_as_the_consensus(admin_user, bot, reviewer, bob):
    session, _turns = make_session(admin_user, bot, [reviewer, bob], turns=1, per_item=2)
    item = queue.item_next(session=session, reviewer=reviewer)
    queue.item_label_save(item=item, reviewer=reviewer, text_assessment=label("positive"))
    queue.item_label_save(item=item, reviewer=bob, text_assessment=label("negative"))
    with pytest.raises(PermissionDenied):
        queue.item_settle(item=item, admin=bob, text_assessment=label("negative"))
    rating = queue.item_settle(item=item, admin=admin_user, text_assessment=label("negative"))
    assert rating.source_id == "consensus:alice-admin@example.com"
    item.refresh_from_db()
    assert item.consensus == rating
    # The consensus is not one more reviewer in the agreement figures.
    [correct, _] = session_selectors.session_agreement(session)
    assert correct.agreement.reviewers == 2


def test_a_label_keeps_the_documents_the_reviewer_rated_elsewhere(admin_user, bot, reviewer):
    session, turns = make_session(admin_user, bot, [reviewer], turns=1)
    documents = [{"ratings": {"groundedness": {"value": "positive"}}}]  # the whole retrieval
    feedback_services.rating_create(  # as the chat page saves it
        turn=turns[0],
        reviewer=reviewer,
        text_assessments=[{"free_text_comment": "from the chat page"}],
        retrieval_assessments=documents,
    )
    item = queue.item_next(session=session, reviewer=reviewer)
    rating = queue.item_label_save(item=item, reviewer=reviewer, text_assessment=label("positive"))
    assert rating.retrieval_assessments == documents
    assert "free_text_comment" not in rating.text_assessment
