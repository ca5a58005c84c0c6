"""A reviewer's rating saved through the ORM that PostgreSQL ends as a deadlock's victim (the
API's save on the event loop takes no turn lock, so the two can deadlock) is saved on a second
try instead of answering 500. The deadlock is made for real: another connection holds the
current version's row, then asks for the turn's lock the ORM save holds."""

import threading
import time

import psycopg
import pytest
from django.db import connection

from feedback import services
from feedback.models import Rating
from tests.conftest import require_server
from tests.support.turns import logged_turn

THUMBS_UP = [{"ratings": {"answer_correct": {"value": "positive"}}}]


@pytest.mark.django_db(transaction=True)
def test_a_save_that_loses_a_deadlock_is_tried_again(deployment_factory, reviewer):
    require_server(connection.vendor == "postgresql", "PostgreSQL (the deadlock is real)")
    turn = logged_turn(deployment_factory(), reviewer)
    current = services.rating_create(turn=turn, reviewer=reviewer, text_assessments=THUMBS_UP)
    settings = connection.settings_dict
    other = psycopg.connect(
        host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432,
        user=settings["USER"], password=settings["PASSWORD"] or None, dbname=settings["NAME"],
    )  # fmt: skip
    outcome: dict = {}

    def save() -> None:
        try:
            outcome["rating"] = services.rating_create(
                turn=turn, reviewer=reviewer, text_assessments=THUMBS_UP
            )
        except Exception as exc:  # what the request would have answered 500 for
            outcome["error"] = exc
        finally:
            connection.close()

    with other:
        other.execute("SET statement_timeout = '10s'")
        # The other transaction holds the current version's row...
        other.execute("UPDATE feedback_rating SET is_current = is_current WHERE id = %s",
                      [current.pk])  # fmt: skip
        saver = threading.Thread(target=save)
        saver.start()
        time.sleep(0.3)  # the save holds the turn's lock and waits for that row
        # ...then waits for the turn's lock: a cycle. The save, waiting longer, is found first
        # (deadlock_timeout) and rolled back; the other then gets the lock and commits.
        other.execute("SELECT 1 FROM agents_requestlog WHERE id = %s FOR UPDATE", [turn.pk])
        other.commit()
        saver.join(timeout=20)
    assert "error" not in outcome, outcome.get("error")
    assert Rating.objects.filter(request=turn).count() == 2
    assert Rating.objects.get(request=turn, is_current=True).pk == outcome["rating"].pk
