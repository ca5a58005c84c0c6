"""A review session mirrored to the suite's real `mlflow server`: label schemas, a review queue
with its reviewers and items, "complete" when an item has its reviewers (also from the hook in
item_label_save), and the expectations as an evaluation dataset. Everything is read back with
MLflow's own Python client."""

import uuid

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from mlflow.genai import datasets as mlflow_datasets
from mlflow.genai import label_schemas as mlflow_schemas
from mlflow.genai import review_queues as mlflow_queues

from feedback.models import LabelSchema
from review import queue, services
from review.mlflow_dataset import session_expectations_to_mlflow_dataset
from review.mlflow_import import session_import_mlflow_traces
from review.mlflow_mirror import session_mirror_to_mlflow
from review.models import MlflowMirror, ReviewItem
from review.tasks import mlflow_item_status_sync
from tests.review.mlflow_support import log_traces
from tests.review.sessions_support import make_reviewer, make_session
from tests.support.servers import free_port
from tests.support.turns import logged_turn

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db,
    pytest.mark.usefixtures("mlflow_client"),
]

SCHEMAS = ["answer_correct", "tone", "topics", "helpfulness", "summary", "expected_facts"]


@pytest.fixture
def experiment(mlflow_server):
    """Three answered questions, traced by MLflow into an experiment of this test's own."""
    turns = [
        {"question": f"Question {i}?", "answer": f"Answer {i}.", "topic": "billing"}
        for i in range(3)
    ]
    return log_traces(mlflow_server.url, f"mirror-{uuid.uuid4().hex[:8]}", turns)


@pytest.fixture
def bot(agent_server_bot):
    return agent_server_bot


def schemas_of_every_kind() -> None:
    for name, fields in {
        "topics": {"input_type": "categorical_list", "options": ["billing", "shipping"]},
        "helpfulness": {"input_type": "numeric", "min_value": 1, "max_value": 5, "step": 1},
        "summary": {"input_type": "text", "max_length": 200, "enable_comment": True},
    }.items():
        LabelSchema.objects.create(name=name, title=f"{name.title()}?", **fields)


def session_with_traces(admin, bot, reviewers, experiment, *, per_item=1, schemas=SCHEMAS):
    session, _ = make_session(
        admin, bot, reviewers, turns=0, per_item=per_item, label_schemas=schemas
    )
    session_import_mlflow_traces(
        session=session, user=admin, deployment=bot, experiment_id=experiment["experiment_id"]
    )
    return session, list(ReviewItem.objects.filter(session=session).select_related("turn"))


def dataset_rows(dataset) -> list[dict]:
    return dataset.to_df().to_dict(orient="records")


def label(item, reviewer, correct="positive", **text):
    return queue.item_label_save(
        item=item,
        reviewer=reviewer,
        text_assessment={"ratings": {"answer_correct": {"value": correct}}, **text},
    )


def test_a_session_is_mirrored_once_however_often_it_runs(
    admin_user, bot, reviewer, bob, experiment, mlflow_server
):
    schemas_of_every_kind()
    session, items = session_with_traces(admin_user, bot, [reviewer, bob], experiment)
    untraced = logged_turn(bot, admin_user, request="Asked in the chat, no trace")
    foreign = logged_turn(bot, admin_user, trace=mlflow_server.make_trace())  # other experiment
    services.items_add(session=session, user=admin_user, turns=[untraced, foreign])
    label(items[0], reviewer)
    experiment_id = experiment["experiment_id"]

    first = session_mirror_to_mlflow(session=session, user=admin_user, experiment_id=experiment_id)

    assert (first.schemas_created, first.schemas_updated) == (6, 0)
    assert (first.items_attached, first.items_not_in_experiment, first.items_without_trace) == (
        3,
        1,
        1,
    )
    assert first.items_completed == 1
    there = {s.name: s for s in mlflow_schemas.list_label_schemas(experiment_id)}
    assert there["answer_correct"].input == mlflow_schemas.InputPassFail("Yes", "No")
    assert there["answer_correct"].instruction == "Is this response correct for your question?"
    assert there["tone"].input == mlflow_schemas.InputCategorical(["ok", "rude"])
    assert there["topics"].input == mlflow_schemas.InputCategorical(
        ["billing", "shipping"], multi_select=True
    )
    assert there["helpfulness"].input == mlflow_schemas.InputNumeric(1.0, 5.0)
    assert there["summary"].input == mlflow_schemas.InputText(max_length=200)
    assert there["summary"].enable_comment is True
    assert str(there["expected_facts"].type) == "expectation"
    assert there["expected_facts"].input == mlflow_schemas.InputText()  # a list is one text
    review_queue = mlflow_queues.get_review_queue(first.queue_id)
    assert review_queue.name == f"Week 49 (#{session.pk})"
    assert str(review_queue.queue_type) == "custom"
    assert sorted(review_queue.users) == ["bob@example.com", reviewer.email]
    assert sorted(review_queue.schema_ids) == sorted(there[name].schema_id for name in SCHEMAS)
    status = {i.item_id: i for i in mlflow_queues.list_review_queue_items(first.queue_id)}
    assert set(status) == set(experiment["trace_ids"])
    done = status[items[0].turn.mlflow_trace_id]
    assert (str(done.status), done.completed_by) == ("complete", reviewer.email)
    assert {str(status[i.turn.mlflow_trace_id].status) for i in items[1:]} == {"pending"}

    LabelSchema.objects.filter(name="tone").update(options=["ok", "rude", "meh"])
    again = session_mirror_to_mlflow(session=session, user=admin_user, experiment_id=experiment_id)

    assert again.queue_id == first.queue_id
    assert (again.schemas_created, again.schemas_updated, again.items_completed) == (0, 1, 0)
    assert len(mlflow_schemas.list_label_schemas(experiment_id)) == len(there)
    assert [q.queue_id for q in mlflow_queues.list_review_queues(experiment_id=experiment_id)] == [
        first.queue_id
    ]
    assert len(mlflow_queues.list_review_queue_items(first.queue_id)) == 3
    tone = mlflow_schemas.get_label_schema(schema_id=there["tone"].schema_id)
    assert tone.input.options == ["ok", "rude", "meh"]
    mirror = MlflowMirror.objects.get(session=session)
    assert (mirror.experiment_id, mirror.queue_id) == (experiment_id, first.queue_id)


def test_the_last_label_of_an_item_completes_it_in_mlflow(
    admin_user, bot, reviewer, bob, experiment, monkeypatch, django_capture_on_commit_callbacks
):
    enqueued = []
    monkeypatch.setattr(
        "review.tasks.mlflow_item_status_sync.apply_async", lambda args, **kw: enqueued.append(args)
    )
    session, items = session_with_traces(
        admin_user, bot, [reviewer, bob], experiment, per_item=2, schemas=["answer_correct"]
    )
    with django_capture_on_commit_callbacks(execute=True):
        label(items[0], reviewer)
        label(items[0], bob)
    assert enqueued == []  # not mirrored yet: nothing to tell MLflow
    mirror = session_mirror_to_mlflow(
        session=session, user=admin_user, experiment_id=experiment["experiment_id"]
    )
    assert mirror.items_completed == 1

    with django_capture_on_commit_callbacks(execute=True):
        label(items[1], reviewer)
    assert enqueued == []  # one of its two reviewers
    with django_capture_on_commit_callbacks(execute=True):
        label(items[1], bob, correct="negative")
        label(items[1], bob)  # a changed label does not complete it again
    assert enqueued == [(items[1].pk,)]

    assert mlflow_item_status_sync(items[1].pk) == "complete"
    assert mlflow_item_status_sync(items[1].pk) == "complete"  # idempotent
    assert mlflow_item_status_sync(items[2].pk) == "not done"
    status = {i.item_id: i for i in mlflow_queues.list_review_queue_items(mirror.queue_id)}
    second = status[items[1].turn.mlflow_trace_id]
    assert (str(second.status), second.completed_by) == ("complete", "bob@example.com")
    assert str(status[items[2].turn.mlflow_trace_id].status) == "pending"


def test_expectations_become_an_evaluation_dataset(admin_user, bot, reviewer, bob, experiment):
    schemas = ["answer_correct", "expected_facts", "expected_response"]
    session, items = session_with_traces(
        admin_user, bot, [reviewer, bob], experiment, per_item=2, schemas=schemas
    )
    agreed, facts_differ, settled = items
    for who in (reviewer, bob):
        facts = {"expected_facts": {"value": ["a", "b"]}}
        label(agreed, who, expectations=facts, suggested_output="Answer zero, better.")
    label(facts_differ, reviewer, expectations={"expected_facts": {"value": ["a"]}})
    label(facts_differ, bob, expectations={"expected_facts": {"value": ["b"]}})
    label(settled, reviewer, suggested_output="One way.")
    label(settled, bob, suggested_output="Another way.")
    queue.item_settle(
        item=settled,
        admin=admin_user,
        text_assessment={
            "ratings": {"answer_correct": {"value": "negative"}},
            "expectations": {"expected_facts": {"value": ["c"]}},
            "suggested_output": "The settled way.",
        },
    )
    experiment_id = experiment["experiment_id"]
    write = {"session": session, "user": admin_user, "experiment_id": experiment_id}

    first = session_expectations_to_mlflow_dataset(**write, name="Week 49 expectations")

    assert (first.records, first.inserted, first.updated) == (2, 2, 0)
    assert (first.items_without_expectations, first.items_with_conflicts) == (1, 1)
    dataset = mlflow_datasets.get_dataset(dataset_id=first.dataset_id)
    assert dataset.name == "Week 49 expectations"
    records = {r["inputs"]["messages"][0]["content"]: r for r in dataset_rows(dataset)}
    assert set(records) == {"Question 0?", "Question 2?"}
    assert records["Question 0?"]["expectations"] == {
        "expected_facts": ["a", "b"],
        "expected_response": "Answer zero, better.",
    }
    assert records["Question 2?"]["expectations"] == {
        "expected_facts": ["c"],
        "expected_response": "The settled way.",
    }
    source = records["Question 0?"]["source"]
    assert (source.source_type, source.source_data) == (
        "TRACE",
        {"trace_id": agreed.turn.mlflow_trace_id},
    )
    assert records["Question 0?"]["tags"]["review_app.item"] == str(agreed.pk)

    again = session_expectations_to_mlflow_dataset(**write, name="Week 49 expectations")
    assert (again.dataset_id, again.inserted, again.updated) == (first.dataset_id, 0, 2)
    assert len(dataset_rows(mlflow_datasets.get_dataset(dataset_id=first.dataset_id))) == 2


def test_the_command_mirrors_and_writes_the_dataset(admin_user, bot, reviewer, experiment, capsys):
    session, items = session_with_traces(
        admin_user, bot, [reviewer], experiment, schemas=["answer_correct", "expected_response"]
    )
    label(items[0], reviewer, suggested_output="Better.")
    call_command(
        "review_mirror_mlflow",
        *("--session", str(session.pk), "--user", admin_user.username),
        *("--experiment-id", experiment["experiment_id"], "--dataset", "from the command"),
    )
    out = capsys.readouterr().out
    assert "2 label schema(s) (2 created, 0 updated), 3 item(s) in the queue, 1 marked" in out
    assert "1 record(s) (1 new, 0 updated); 2 item(s) without expectations" in out


def test_mirroring_needs_a_reachable_server_and_at_most_ten_reviewers(
    admin_user, bot, reviewer, django_user_model
):
    session, _ = make_session(admin_user, bot, [reviewer], turns=0)
    bot.mlflow_tracking_uri = f"http://127.0.0.1:{free_port()}"
    bot.save()
    with pytest.raises(ValidationError, match="Could not reach the MLflow tracking server"):
        session_mirror_to_mlflow(session=session, user=admin_user, experiment_id="1")
    assert not MlflowMirror.objects.exists()
    session.assigned_users.add(*(make_reviewer(django_user_model, f"r{i}") for i in range(10)))
    with pytest.raises(ValidationError, match="at most 10 users; this session has 11"):
        session_mirror_to_mlflow(session=session, user=admin_user, experiment_id="1")
