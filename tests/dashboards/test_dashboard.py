"""Dashboards: with known turns and ratings, each plotted number equals a direct computation
(percentiles by numpy's linear interpolation, as PostgreSQL's percentile_cont), through SQL and
through the slower path SQLite takes; the table view holds the same numbers; bad ranges are
a 400."""

import json
from datetime import datetime, time, timedelta

import numpy
import pytest
from django.core.cache import cache
from django.utils import timezone

from agents.models import RequestLog
from agents.trace_outline import outline_of
from dashboards import selectors
from feedback import services
from tests.feedback.conftest import label_schemas
from tests.support import SHARED_FIXTURES
from tests.support.turns import logged_turn

pytestmark = pytest.mark.django_db
DAY0_LATENCIES = [10, 20, 30, 40, 1000]
DAY1_LATENCIES = [100, 300]


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def midnight(days_ago: int) -> datetime:
    day = timezone.localdate() - timedelta(days=days_ago)
    return timezone.make_aware(datetime.combine(day, time.min))


def turn_at(deployment, user, at: datetime, **fields) -> RequestLog:
    turn = logged_turn(deployment, user, **fields)
    RequestLog.objects.filter(pk=turn.pk).update(created_at=at)
    turn.refresh_from_db()
    return turn


@pytest.fixture
def known(deployment_factory, reviewer, admin_user):
    """Two days ago: five answered turns (one with a real MLflow trace: tokens and a retriever)
    and one failed; yesterday: two answered, one incomplete. Ratings on two days ago's."""
    deployment = deployment_factory(display_name="Bot")
    label_schemas(
        deployment,
        {"name": "correct", "input_type": "thumbs"},
        {"name": "quality", "input_type": "numeric", "min_value": 1, "max_value": 5},
    )
    trace = json.loads((SHARED_FIXTURES / "traces" / "rag_simple.json").read_text())
    day0 = [
        turn_at(
            deployment, reviewer, midnight(2) + timedelta(hours=1, minutes=n), execution_time_ms=ms
        )
        for n, ms in enumerate(DAY0_LATENCIES)
    ]
    RequestLog.objects.filter(pk=day0[0].pk).update(trace=trace, trace_outline=outline_of(trace))
    turn_at(
        deployment,
        reviewer,
        midnight(2) + timedelta(hours=2),
        error="Timed out",
        execution_time_ms=30_000,
    )
    for n, ms in enumerate(DAY1_LATENCIES):
        turn_at(
            deployment, reviewer, midnight(1) + timedelta(hours=3, minutes=n), execution_time_ms=ms
        )
    turn_at(
        deployment,
        reviewer,
        midnight(1) + timedelta(hours=4),
        incomplete=True,
        execution_time_ms=50,
    )
    for turn, who, correct, quality in [
        (day0[1], reviewer, "positive", 4),
        (day0[1], admin_user, "negative", 2),
        (day0[2], reviewer, "positive", 5),
    ]:
        services.rating_create(
            turn=turn,
            reviewer=who,
            text_assessments=[
                {"ratings": {"correct": {"value": correct}, "quality": {"value": quality}}}
            ],
        )
    span_id = next(iter(RequestLog.objects.get(pk=day0[0].pk).trace_outline["documents"]))
    services.rating_create(
        turn=RequestLog.objects.get(pk=day0[0].pk),
        reviewer=reviewer,
        retrieval_assessments=[
            {
                "position": 0,
                "step_id": span_id,
                "ratings": {"chunk_relevance": {"value": "positive"}},
            },
            {
                "position": 1,
                "step_id": span_id,
                "ratings": {"chunk_relevance": {"value": "negative"}},
            },
        ],
    )
    return deployment, trace


def board_of(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200, response.content
    return response.context["board"], response.content.decode()


def series(board, slug: str) -> dict[str, list]:
    chart = next(c for c in board.charts if c.slug == slug)
    return {s.label: s.values for s in chart.series}


@pytest.mark.parametrize("in_sql", [True, False], ids=["percentiles in SQL", "from the values"])
def test_each_plotted_number_equals_a_direct_computation(
    client, admin_user, known, monkeypatch, in_sql
):
    deployment, trace = known
    if not in_sql or selectors.percentiles_in_sql():
        monkeypatch.setattr(selectors, "percentiles_in_sql", lambda: in_sql)
    else:
        pytest.skip("SQL percentiles need PostgreSQL")
    client.force_login(admin_user)
    since = (timezone.localdate() - timedelta(days=3)).isoformat()
    board, html = board_of(
        client, f"/deployments/{deployment.pk}/dashboard/", range="custom", since=since,
        until=timezone.localdate().isoformat(), bucket="day",
    )  # fmt: skip
    # Buckets: 3 days ago, 2 days ago, yesterday, today.
    assert series(board, "turns") == {str(deployment): [0, 6, 3, 0]}
    latency = series(board, "latency")
    for p in (50, 95, 99):
        got = latency[f"p{p}"]
        assert got[0] is None and got[3] is None
        assert got[1] == pytest.approx(numpy.percentile(DAY0_LATENCIES, p))
        assert got[2] == pytest.approx(numpy.percentile([*DAY1_LATENCIES, 50], p))
    errors = series(board, "errors")
    assert errors["failed"] == [None, 1 / 6, 0.0, None]
    assert errors["incomplete"] == [None, 0.0, 1 / 3, None]
    usage = json.loads(trace["info"]["trace_metadata"]["mlflow.trace.tokenUsage"])
    tokens = series(board, "tokens")
    assert (
        tokens["input"][1] == usage["input_tokens"]
        and tokens["output"][1] == usage["output_tokens"]
    )
    assert series(board, "q-correct") == {str(deployment): [None, 2 / 3, None, None]}
    assert list(series(board, "q-quality").values()) == [[None, pytest.approx(11 / 3), None, None]]
    assert list(series(board, "documents").values()) == [[None, 0.5, None, None]]
    reviewers = series(board, "reviewers")
    today = timezone.localdate()
    assert reviewers["ratings"][3] == 4 and reviewers["reviewers"][3] == 2  # made today
    assert [t.negatives for t in board.negative] == [1]
    # The table view says the same.
    assert '<td class="num">66.7 %</td>' in html
    assert f'<th scope="row">{(today - timedelta(days=2)).isoformat()}</th>' in html
    assert f"{numpy.percentile(DAY0_LATENCIES, 50):,.1f} ms" in html


def test_closed_buckets_come_from_the_cache(
    client, admin_user, known, django_assert_max_num_queries
):
    deployment, _ = known
    client.force_login(admin_user)
    url = f"/deployments/{deployment.pk}/dashboard/"
    first, _ = board_of(client, url, range="7d")
    RequestLog.objects.filter(deployment=deployment).update(execution_time_ms=1)
    again, _ = board_of(client, url, range="7d")
    # Six closed days were cached: only today's bucket is read again.
    assert series(again, "latency")["p50"][:-1] == series(first, "latency")["p50"][:-1]


def test_two_versions_side_by_side(client, admin_user, known, deployment_factory, reviewer):
    deployment, _ = known
    second = deployment_factory(
        model_name=deployment.model_name, model_version="2", display_name="Bot v2"
    )
    turn_at(second, reviewer, midnight(1) + timedelta(hours=5), execution_time_ms=70)
    client.force_login(admin_user)
    board, html = board_of(
        client, f"/deployments/{deployment.pk}/dashboard/", range="7d", compare=second.pk
    )
    turns = series(board, "turns")
    assert set(turns) == {str(deployment), str(second)}
    assert sum(turns[str(second)]) == 1 and sum(turns[str(deployment)]) == 9
    assert f'<option value="{second.pk}" selected>' in html


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"range": "custom", "since": "2026-12-02", "until": "2026-12-01"}, "before the start"),
        ({"range": "custom", "since": "2026-12-02"}, "Give both days"),
        (
            {"range": "custom", "since": "2025-01-01", "until": "2026-12-01", "bucket": "hour"},
            "Too many buckets",
        ),
        ({"range": "year"}, "range"),
        ({"compare": "9999"}, "compare"),
    ],
)
def test_a_range_that_is_not_one_is_a_400(client, admin_user, known, params, says):
    deployment, _ = known
    client.force_login(admin_user)
    response = client.get(f"/deployments/{deployment.pk}/dashboard/", params)
    assert response.status_code == 400
    assert says in response.content.decode()


def test_who_sees_what(client, stakeholder, known, deployment_factory, admin_user):
    deployment, _ = known
    hidden = deployment_factory()
    hidden.allowed_users.add(admin_user)
    client.force_login(stakeholder)
    assert client.get(f"/deployments/{hidden.pk}/dashboard/").status_code == 404
    board, _ = board_of(client, f"/deployments/{deployment.pk}/dashboard/")
    assert board.negative == [], "questions of other people's turns are for reviewers"
    overall, _ = board_of(client, "/dashboard/", range="30d")
    assert sum(series(overall, "turns")["All deployments"]) == 9
