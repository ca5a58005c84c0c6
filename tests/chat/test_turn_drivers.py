"""On PostgreSQL the API's lean path awaits a turn's everyday statements on the event loop
(agents/turns/pg_async.py); everything else runs them through the ORM in a thread. Both must
write the same rows, read the same history, survive a dead connection, and refuse a turn with
"busy" (503) when the pool stays empty, writing nothing."""

import asyncio
import json

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from rest_framework.authtoken.models import Token

from agents.client import close_http_client
from agents.models import Conversation, RequestLog
from agents.turns import Overloaded, admission, db, pg_async, send_turn, turn_start
from reviewapp import pg_loop
from tests.conftest import require_server

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
QUESTION = "How does MLflow tracing show retrieved documents?"
FOLLOW_UP = "And how do I rate them?"
# What a turn's row holds that does not depend on when it ran or which conversation it is in.
SAME_ON_BOTH = [
    "request",
    "response",
    "status_code",
    "error",
    "error_detail",
    "incomplete",
    "custom_inputs",
    "custom_outputs",
    "output_items",
    "request_metadata",
    "user_id",
    "deployment_id",
]


@pytest.fixture(autouse=True)
def on_postgresql():
    require_server(
        connection.vendor == "postgresql",
        "PostgreSQL as the test database (DATABASE_URL=postgres://...)",
    )


@pytest.fixture
def token(django_user_model) -> str:
    user = django_user_model.objects.create_user("driver-reviewer", "driver@example.com")
    user.groups.add(Group.objects.get(name="reviewer"))
    return Token.objects.create(user=user).key


@pytest.fixture
def deployment(demo_deployment):
    demo_deployment.default_custom_inputs = {"top_k": 2}
    demo_deployment.save()
    return demo_deployment


def as_the_lean_path(scenario):
    """Run `scenario` as agents/lean_chat_api.py runs a turn (its database steps on the shared
    threads, or on this loop on PostgreSQL), then close this loop's pool and agent session."""

    async def run():
        db.pooled_threads.set(db.shared_executor())
        try:
            return await scenario()
        finally:
            await pg_loop.close_pool()
            await close_http_client()

    return asyncio.run(run())


async def api_turn(token, deployment, message=QUESTION, **asked) -> RequestLog:
    started = await turn_start(
        api_token=token, deployment_id=deployment.pk, message=message, **asked
    )
    return await send_turn(started)


def pool_requests() -> int:
    """Connections handed out by this loop's pool so far (0: it was never opened)."""
    pool = pg_loop.loop_pool()
    return pool.get_stats()["requests_num"] if pool is not None else 0


def two_turns(settings, token, deployment, *, on_loop: bool):
    """A new conversation, then a follow-up whose history the start reads: the rows, and how
    many connections the loop's own pool gave the follow-up."""
    settings.API_DB_ASYNC = on_loop

    async def scenario():
        first = await api_turn(token, deployment)
        before = pool_requests()
        second = await api_turn(token, deployment, FOLLOW_UP, conversation_id=first.conversation_id)
        return first, second, pool_requests() - before

    return as_the_lean_path(scenario)


def test_both_drivers_write_the_same_turns(settings, token, deployment):
    by_orm = two_turns(settings, token, deployment, on_loop=False)
    on_loop = two_turns(settings, token, deployment, on_loop=True)

    assert by_orm[2] == 0, "API_DB_ASYNC=0: no statement of the loop's own"
    assert on_loop[2] == 2, "the follow-up's start and save, each one checkout on the loop"
    for orm_turn, loop_turn in zip(by_orm[:2], on_loop[:2], strict=True):
        stored = RequestLog.objects.get(pk=loop_turn.pk)
        expected = RequestLog.objects.get(pk=orm_turn.pk)
        for name in SAME_ON_BOTH:
            assert getattr(stored, name) == getattr(expected, name), name
        assert stored.trace_outline is not None and expected.trace_outline is not None
        assert len(stored.trace_outline["spans"]) == len(expected.trace_outline["spans"])
        assert stored.created_at.tzinfo is not None
        assert stored.databricks_request_id == stored.trace["info"]["client_request_id"]
    # The follow-up sent the first turn's question and answer, read back on either driver.
    for first, second, _ in (by_orm, on_loop):
        sent = json.loads(RequestLog.objects.get(pk=second.pk).request_raw)["messages"]
        assert sent[:2] == [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": first.response},
        ]
        conversation = Conversation.objects.get(pk=first.conversation_id)
        assert conversation.title == QUESTION
        assert conversation.custom_inputs == {"top_k": 2}
        assert conversation.updated_at > conversation.created_at


def test_another_users_conversation_is_a_404_on_the_loop_too(
    settings, token, deployment, django_user_model
):
    other = django_user_model.objects.create_user("driver-other", "other@example.com")
    theirs = Conversation.objects.create(deployment=deployment, user=other)

    async def scenario():
        await api_turn(token, deployment)  # warms the access cache: the next start is the loop's
        with pytest.raises(Exception, match="No such conversation") as refused:
            await api_turn(token, deployment, conversation_id=theirs.pk)
        return refused.type.__name__

    assert as_the_lean_path(scenario) == "Http404"
    assert not RequestLog.objects.filter(conversation=theirs).exists()


def kill_the_pool_connections() -> int:
    """What a restart of PostgreSQL does to the loop's pooled connections."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            [pg_loop.APPLICATION_NAME],
        )
        return cursor.fetchone()[0]


def test_a_start_that_meets_a_dead_connection_goes_through_the_orm(token, deployment, caplog):
    async def scenario():
        await api_turn(token, deployment)
        await api_turn(token, deployment)  # the cache is warm: this start used the pool too
        killed = await asyncio.to_thread(kill_the_pool_connections)
        after = await api_turn(token, deployment, FOLLOW_UP)
        return killed, after

    killed, after = as_the_lean_path(scenario)
    assert killed >= 1
    assert not after.error
    assert RequestLog.objects.filter(request=FOLLOW_UP).count() == 1
    assert "turn start: through the ORM instead" in caplog.text


def test_a_save_that_meets_a_dead_connection_is_sent_again_once(token, deployment, caplog):
    async def scenario():
        await api_turn(token, deployment)
        started = await turn_start(api_token=token, deployment_id=deployment.pk, message=FOLLOW_UP)
        killed = await asyncio.to_thread(kill_the_pool_connections)  # while the agent "thinks"
        return killed, await send_turn(started)

    killed, saved = as_the_lean_path(scenario)
    assert killed >= 1
    stored = RequestLog.objects.get(request=FOLLOW_UP)  # exactly one row
    assert stored.pk == saved.pk and stored.response == saved.response and not stored.error
    assert stored.databricks_request_id == stored.trace["info"]["client_request_id"]


def test_an_empty_pool_refuses_the_turn_as_busy_and_writes_nothing(settings, token, deployment):
    settings.DATABASE_POOL_SIZE = 1
    settings.DATABASE_POOL_TIMEOUT = 1

    async def scenario():
        await api_turn(token, deployment)  # warm: the next start asks the loop's pool
        counts = await asyncio.to_thread(
            lambda: (RequestLog.objects.count(), Conversation.objects.count())
        )
        async with pg_loop.connection():  # its only connection, held
            with pytest.raises(Overloaded) as refused:
                await api_turn(token, deployment, FOLLOW_UP)
        return counts, str(refused.value), admission.in_flight()

    counts, message, in_flight = as_the_lean_path(scenario)
    assert message == admission.DATABASE_BUSY
    assert (RequestLog.objects.count(), Conversation.objects.count()) == counts
    assert in_flight == 0, "the refused turn gave its slot back"


@pytest.mark.parametrize("on_loop", [False, True], ids=["orm", "loop"])
def test_an_agent_request_id_already_taken_gets_ours(
    settings, monkeypatch, token, deployment, on_loop
):
    """The outgoing call is faked here (the one seam): the demo agent never repeats an id."""
    from agents.client import AgentResponse
    from agents.turns import call

    settings.API_DB_ASYNC = on_loop
    body = {
        "choices": [{"message": {"role": "assistant", "content": "Hi"}}],
        "databricks_output": {"databricks_request_id": "agent-id-1"},
    }

    async def same_id_each_time(*args, **kwargs):
        return AgentResponse(200, json.dumps(body), body)

    monkeypatch.setattr(call, "post_json", same_id_each_time)

    async def scenario():
        return [await api_turn(token, deployment) for _ in range(3)]

    first, *later = as_the_lean_path(scenario)
    assert RequestLog.objects.get(pk=first.pk).databricks_request_id == "agent-id-1"
    for turn in later:
        stored = RequestLog.objects.get(pk=turn.pk)
        assert stored.databricks_request_id not in ("agent-id-1", first.databricks_request_id)
        assert stored.request_metadata["agent_request_id"] == "agent-id-1"
        assert Conversation.objects.get(pk=stored.conversation_id).title == QUESTION


@pytest.mark.parametrize("on_loop", [False, True], ids=["orm", "loop"])
def test_a_failed_call_is_a_logged_turn_on_both_drivers(
    settings, token, deployment_factory, on_loop
):
    settings.API_DB_ASYNC = on_loop
    unreachable = deployment_factory(
        query_endpoint="http://127.0.0.1:9/serving-endpoints/gone/invocations",
        agent_schema="chat_completions",
    )

    async def scenario():
        return [await api_turn(token, unreachable) for _ in range(2)]

    for turn in as_the_lean_path(scenario):
        stored = RequestLog.objects.get(pk=turn.pk)
        assert stored.error and stored.status_code >= 500
        assert stored.trace is None and stored.response == ""


def test_a_big_reply_is_normalized_off_the_loop_and_saved_whole(token, deployment):
    """A long question comes back in the trace's span inputs: a reply past BIG_REPLY_BYTES,
    whose trace is normalized in a thread instead of on the loop."""
    long_question = "How does MLflow tracing show retrieved documents? " * 700

    async def scenario():
        await api_turn(token, deployment)  # warm: the next turn's start is the loop's too
        return await api_turn(token, deployment, long_question)

    turn = as_the_lean_path(scenario)
    stored = RequestLog.objects.get(pk=turn.pk)
    assert len(stored.response_raw) > pg_async.BIG_REPLY_BYTES
    assert stored.request == long_question and not stored.error
    assert stored.trace_outline["trace_id"] == stored.trace["info"]["trace_id"]
    assert len(stored.trace_outline["spans"]) == len(stored.trace["data"]["spans"])
