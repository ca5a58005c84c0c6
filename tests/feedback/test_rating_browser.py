"""End to end in Chromium, with a real Celery worker on real Redis and the real demo agent: a
reviewer rates an answer and a retrieved document, the page says "Saved" and then "delivered",
and the deployment's feedback endpoint received exactly what the reviewer chose. Then the same
with the keyboard only."""

import re
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.chat.test_chat_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.integration]
DELIVERED_TIMEOUT_MS = 15_000
COMMENT = "Misses that traces are stored per request."
TYPED = "Typed, not clicked."
BETTER = "MLflow Tracing records each step (spans) of a request, with inputs and outputs."


@pytest.fixture
def reviewer_login(transactional_db, django_user_model):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("rev", "rev@example.com", "a-long-password")
    user.groups.add(Group.objects.get(name="reviewer"))
    return user


def endpoint_name(deployment) -> str:
    """The <name> in …/serving-endpoints/<name>/served-models/feedback/invocations."""
    parts = urlsplit(deployment.effective_feedback_endpoint).path.split("/")
    return parts[parts.index("serving-endpoints") + 1]


def newest_record(demo_agent, endpoint: str, request_id: str, done: Callable[[dict], bool]):
    """The sink's last record for request_id, once `done(record)`; deliveries are asynchronous."""
    deadline = time.monotonic() + 15
    while True:
        entries = demo_agent.records(endpoint)
        records = [e["record"] for e in entries if e["record"]["request_id"] == request_id]
        if records and done(records[-1]):
            return records[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"the sink never got the expected record; it got {records}")
        time.sleep(0.1)


def save(page: Page, bar: Locator, action: Callable[[], None]) -> None:
    """Do what saves a new rating version, then wait until the page says that version was
    saved and delivered, as a person reads it before going on (which also keeps the web thread
    and the worker from writing the in-memory test database at the same instant)."""
    bar.locator(".rating-status").evaluate("el => { el.dataset.stale = 'yes' }")
    with page.expect_response(lambda r: r.request.method == "POST" and "/rating/" in r.url) as r:
        action()
    assert r.value.ok, r.value.status
    fresh = bar.locator(".rating-status:not([data-stale])")
    expect(fresh).to_contain_text("Saved")
    expect(fresh).to_contain_text("delivered", timeout=DELIVERED_TIMEOUT_MS)


def ask(page: Page, live_server, deployment) -> tuple[Locator, str]:
    """Asks the demo agent a question in a new conversation; returns the turn and request id."""
    page.goto(f"{live_server.url}/chat/{deployment.pk}/")
    page.get_by_label("Message").fill("What is MLflow tracing?")
    page.keyboard.press("Enter")
    turn = page.locator(".turn").last
    expect(turn.locator(".msg--assistant")).to_contain_text("MLflow Tracing records")
    return turn, turn.locator(".turn-meta code").first.inner_text()


def test_a_reviewer_rates_an_answer_and_a_document_and_the_sink_gets_it(
    page: Page, live_server, reviewer_login, demo_deployment, demo_agent, celery_worker_on_redis
):
    log_in(page, live_server)
    turn, request_id = ask(page, live_server, demo_deployment)
    bar = turn.get_by_role("form", name="Rate this answer")
    expect(bar.get_by_role("status")).to_contain_text("Not rated yet")

    down = bar.get_by_role("radio", name="No (thumbs down)")
    save(page, bar, down.check)
    expect(down).to_be_checked()
    bar.get_by_text("Comment or suggest a better answer").click()
    bar.get_by_label("Comment", exact=True).fill(COMMENT)
    bar.get_by_label("Suggest a better answer").fill(BETTER)
    save(page, bar, bar.get_by_role("button", name="Save").click)
    expect(bar.get_by_label("Comment", exact=True)).to_have_value(COMMENT)  # still there

    turn.locator(".trace > summary").click()
    turn.get_by_role("button", name=re.compile(r"^RETRIEVER ")).click()
    detail = turn.locator(".span-detail")
    second = detail.locator(".document[data-position='1']")
    expect(second).to_be_visible()
    span_id = detail.locator(".facts dd code").first.inner_text()
    not_relevant = second.get_by_role("radio", name="Not relevant")
    save(page, bar, not_relevant.check)  # the answer's status line follows the document's save
    expect(not_relevant).to_be_checked()
    expect(second.get_by_role("button", name=re.compile(r"^Clear"))).to_be_visible()
    expect(bar.get_by_role("status")).to_contain_text("1 document rated")

    endpoint = endpoint_name(demo_deployment)
    assert endpoint == "agents_main-demo-rag_agent"
    record = newest_record(
        demo_agent, endpoint, request_id, lambda r: bool(r["retrieval_assessments"])
    )
    assert record["source"] == {"id": "rev@example.com", "type": "human"}
    text = record["text_assessments"][0]
    assert text["ratings"]["answer_correct"]["value"] == "negative"
    assert text["free_text_comment"] == COMMENT
    assert text["suggested_output"] == BETTER
    assert record["retrieval_assessments"] == [
        {"position": 1, "step_id": span_id, "ratings": {"chunk_relevance": {"value": "negative"}}}
    ]


def test_rating_with_the_keyboard_only(
    page: Page, live_server, reviewer_login, demo_deployment, demo_agent, celery_worker_on_redis
):
    log_in(page, live_server)
    turn, request_id = ask(page, live_server, demo_deployment)
    bar = turn.get_by_role("form", name="Rate this answer")
    up = bar.get_by_role("radio", name="Yes (thumbs up)")
    down = bar.get_by_role("radio", name="No (thumbs down)")
    save_button = bar.get_by_role("button", name="Save")

    turn.get_by_role("link", name="Open").focus()  # the last stop before the rating bar
    page.keyboard.press("Tab")
    expect(up).to_be_focused()
    save(page, bar, lambda: page.keyboard.press("Space"))
    expect(up).to_be_checked()
    expect(up).to_be_focused()  # saving keeps the reviewer's place
    save(page, bar, lambda: page.keyboard.press("ArrowRight"))  # moves within the group, saves
    expect(down).to_be_checked()
    expect(down).to_be_focused()

    page.keyboard.press("Tab")
    expect(bar.get_by_text("Comment or suggest a better answer")).to_be_focused()
    page.keyboard.press("Enter")  # opens the comment area
    page.keyboard.press("Tab")
    expect(bar.get_by_label("Comment", exact=True)).to_be_focused()
    page.keyboard.type(TYPED)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(save_button).to_be_focused()
    save(page, bar, lambda: page.keyboard.press("Enter"))
    expect(save_button).to_be_focused()

    record = newest_record(
        demo_agent,
        endpoint_name(demo_deployment),
        request_id,
        lambda r: "free_text_comment" in (r["text_assessments"] or [{}])[0],
    )
    assert record["text_assessments"] == [
        {"ratings": {"answer_correct": {"value": "negative"}}, "free_text_comment": TYPED}
    ]
