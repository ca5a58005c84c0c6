"""Importing an MLflow experiment's traces into a review session, against the suite's real
`mlflow server` with traces logged by the MLflow library (tests/review/mlflow_support.py)."""

import uuid

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from agents.models import RequestLog
from review.mlflow_import import session_import_mlflow_traces
from review.models import ReviewItem
from tests.review.mlflow_support import log_traces
from tests.review.sessions_support import make_reviewer, make_session
from tests.support.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

TURNS = [
    {"question": "Why was I charged twice?", "answer": "A retry doubled it.", "topic": "billing"},
    {"question": "Where is my parcel?", "answer": "In Lisbon.", "topic": "shipping"},
    {"question": "Can I get an invoice?", "answer": "Yes, in Settings.", "topic": "billing"},
    {"question": "Refund my plan?", "answer": "", "topic": "billing", "error": True},
]


@pytest.fixture(autouse=True)
def quiet_mlflow(monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")


@pytest.fixture(scope="module")
def logged(mlflow_server):
    """Four traces (three on billing, the last one failed) in an experiment of their own."""
    return log_traces(mlflow_server.url, f"import-{uuid.uuid4().hex[:8]}", TURNS)


@pytest.fixture
def session(admin_user, agent_server_bot, django_user_model):
    reviewer = make_reviewer(django_user_model, "bob")
    return make_session(admin_user, agent_server_bot, [reviewer], turns=0)[0]


def run_import(session, admin, deployment, experiment_id, **options):
    return session_import_mlflow_traces(
        session=session, user=admin, deployment=deployment, experiment_id=experiment_id, **options
    )


def test_matching_traces_become_turns_and_items_once(session, admin_user, agent_server_bot, logged):
    experiment = logged["experiment_id"]
    billing = "tags.topic = 'billing'"

    result = run_import(session, admin_user, agent_server_bot, experiment, filter_string=billing)

    # The failed trace becomes a turn of the log, not an item: there is no answer to label.
    assert (result.found, result.imported, result.added, result.skipped) == (3, 3, 2, 0)
    items = list(ReviewItem.objects.filter(session=session).select_related("turn"))
    charged, invoice = (item.turn for item in items)  # oldest first
    refund = RequestLog.objects.get(mlflow_trace_id=logged["trace_ids"][3])
    assert (charged.request, charged.response) == (
        "Why was I charged twice?",
        "A retry doubled it.",
    )
    assert (invoice.request, invoice.response) == ("Can I get an invoice?", "Yes, in Settings.")
    ids = logged["trace_ids"]
    assert [t.mlflow_trace_id for t in (charged, invoice, refund)] == [ids[0], ids[2], ids[3]]
    assert charged.trace["info"]["trace_id"] == ids[0]
    assert charged.trace_outline and not charged.error and charged.deployment == agent_server_bot
    assert (refund.request, bool(refund.error)) == ("Refund my plan?", True)
    assert charged.request_metadata == {"imported_from": "mlflow", "experiment_id": experiment}

    again = run_import(session, admin_user, agent_server_bot, experiment, filter_string=billing)
    assert (again.found, again.imported, again.added) == (3, 0, 0)
    everything = run_import(session, admin_user, agent_server_bot, experiment, max_results=10)
    assert (everything.found, everything.imported, everything.added) == (4, 1, 1)
    assert RequestLog.objects.count() == 4
    assert ReviewItem.objects.filter(session=session).count() == 3


def test_max_results_takes_the_newest(session, admin_user, agent_server_bot, logged):
    result = run_import(
        session, admin_user, agent_server_bot, logged["experiment_id"], max_results=2
    )
    assert (result.found, result.imported) == (2, 2)
    assert sorted(RequestLog.objects.values_list("request", flat=True)) == [
        "Can I get an invoice?",
        "Refund my plan?",
    ]


def test_a_bad_filter_is_refused_and_nothing_is_saved(
    session, admin_user, agent_server_bot, logged
):
    with pytest.raises(ValidationError) as raised:
        run_import(
            session,
            admin_user,
            agent_server_bot,
            logged["experiment_id"],
            filter_string="tags.topic === (",
        )
    assert "HTTP 400" in str(raised.value) and "filter" in str(raised.value)
    assert not RequestLog.objects.exists()
    assert not ReviewItem.objects.exists()


def test_an_unknown_experiment_is_named(session, admin_user, agent_server_bot):
    with pytest.raises(ValidationError, match="has no experiment 987654"):
        run_import(session, admin_user, agent_server_bot, "987654")


def test_an_unreachable_server_is_reported(session, admin_user, agent_server_bot, logged):
    agent_server_bot.mlflow_tracking_uri = f"http://127.0.0.1:{free_port()}"
    agent_server_bot.save()
    with pytest.raises(ValidationError, match="Could not reach the MLflow tracking server"):
        run_import(session, admin_user, agent_server_bot, logged["experiment_id"])
    assert not RequestLog.objects.exists()


def test_only_the_sessions_deployments_and_admins(
    session, admin_user, agent_server_bot, deployment_factory, reviewer, logged
):
    other = deployment_factory(
        endpoint_kind="mlflow_agent_server",
        mlflow_tracking_uri=agent_server_bot.mlflow_tracking_uri,
    )
    with pytest.raises(ValidationError, match="not one of this session's deployments"):
        run_import(session, admin_user, other, logged["experiment_id"])
    with pytest.raises(Exception, match="Only admins"):
        run_import(session, reviewer, agent_server_bot, logged["experiment_id"])
    assert not RequestLog.objects.exists()


def test_the_command_imports_and_reports(session, admin_user, agent_server_bot, logged, capsys):
    argv = [
        *("--session", str(session.pk), "--user", admin_user.username),
        *("--deployment", str(agent_server_bot.pk), "--experiment-id", logged["experiment_id"]),
    ]
    call_command("review_import_traces", *argv, "--filter", "tags.topic = 'shipping'")
    assert "1 trace(s) found, 1 imported, 1 added" in capsys.readouterr().out
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("review_import_traces", *argv, "--filter", "nonsense ((")
