"""Next under real contention: reviewers who press Next at the same moment, each in their own
thread and database connection, get different items. Only PostgreSQL shows this: SQLite lets
one writer at a time in, so there the race never happens. Outside CI the test is skipped when
the suite does not run on PostgreSQL; under CI=true it must (.ci/run sets DATABASE_URL)."""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from feedback.models import LabelSchema
from review import queue
from review.models import ReviewSession, ReviewSlot, SlotState
from tests.conftest import require_server
from tests.review.sessions_support import label, make_reviewer, make_session

# Committed rows, so that every thread's connection sees them.
pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 3


@pytest.fixture(autouse=True)
def on_postgresql():
    require_server(
        connection.vendor == "postgresql",
        "PostgreSQL as the test database (DATABASE_URL=postgres://...)",
    )


@pytest.fixture(autouse=True)
def answer_correct(on_postgresql):
    """The built-in thumbs schema, which a data migration adds: a transactional test before
    this one may have emptied the tables (post_migrate puts back only the roles)."""
    LabelSchema.objects.get_or_create(
        name="answer_correct",
        defaults={"kind": "feedback", "input_type": "thumbs", "title": "Correct?"},
    )


def press_next_together(session_pk: int, usernames: list[str]) -> dict:
    """Each reviewer in a thread of their own: wait for all, press Next, label the item, and
    again for ROUNDS rounds. Returns {(round, username): item id} and the errors raised."""
    barrier = threading.Barrier(len(usernames))
    got: dict[tuple[int, str], int | None] = {}
    errors: list[BaseException] = []

    def reviewer_presses(username: str) -> None:
        try:
            user = get_user_model().objects.get(username=username)
            session = ReviewSession.objects.get(pk=session_pk)
            for round_ in range(ROUNDS):
                barrier.wait(timeout=30)
                item = queue.item_next(session=session, reviewer=user)
                got[(round_, username)] = item.pk if item else None
                if item is not None:
                    queue.item_label_save(
                        item=item, reviewer=user, text_assessment=label("positive")
                    )
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()  # the others stop waiting for this one
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=reviewer_presses, args=(u,)) for u in usernames]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return {"got": got, "errors": errors}


@pytest.mark.parametrize("reviewers", [2, 8])
def test_reviewers_pressing_next_at_once_get_different_items(
    admin_user, deployment_factory, django_user_model, reviewers
):
    team = [make_reviewer(django_user_model, f"rev{i}") for i in range(reviewers)]
    session, _ = make_session(
        admin_user, deployment_factory(), team, turns=reviewers * ROUNDS, per_item=1
    )

    result = press_next_together(session.pk, [u.username for u in team])

    assert not result["errors"], result["errors"]
    got = result["got"]
    assert len(got) == reviewers * ROUNDS and None not in got.values()
    assert len(set(got.values())) == len(got), "two reviewers were given the same item"
    slots = ReviewSlot.objects.filter(session=session)
    assert slots.filter(state=SlotState.DONE).count() == reviewers * ROUNDS
    by_item = {slot.item_id: slot.reviewer.username for slot in slots}
    assert by_item == {item: username for (_, username), item in got.items()}
