"""End to end in Chromium, with the real demo agent and a real Celery worker on real Redis: a
session over five of the demo agent's answers, two reviewers per item. Two reviewers work
through every item with the keyboard only (from /review/: Tab to Start, then the keys of focus
mode), disagreeing on two items; the session page then shows 100 % and the agreement; an admin
settles one disagreement; and the demo agent's feedback endpoint receives every label and the
final one."""

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import Page, expect

from feedback.models import LabelSchema
from review import services
from review.models import ReviewItem
from reviewapp import roles
from tests.feedback.test_rating_browser import endpoint_name

pytestmark = [pytest.mark.browser, pytest.mark.integration]
PASSWORD = "a-long-password"
CONVERSATIONS = [
    ["What is MLflow tracing?", "How are spans stored?", "Which tools read traces?"],
    ["What is a retriever?", "How many documents does it return?"],
]
RITA_COMMENT = "Clear and sourced."
BOB_BETTER = "MLflow stores each span with its inputs and outputs in the trace."
DELIVERED_TIMEOUT_S = 30


BUILT_IN_SCHEMAS = {  # as migration feedback/0002 adds them
    "answer_correct": ("feedback", "thumbs", "Is this response correct for your question?"),
    "expected_response": ("expectation", "text", "What should the answer have been?"),
    "expected_facts": ("expectation", "text_list", "Facts a correct answer states"),
}


def built_in_schemas() -> None:
    """The label schemas the migrations add: a transactional test's database is flushed
    after each test, migration rows included."""
    for name, (kind, input_type, title) in BUILT_IN_SCHEMAS.items():
        LabelSchema.objects.get_or_create(
            name=name, defaults={"kind": kind, "input_type": input_type, "title": title}
        )


def demo_turns(deployment, user) -> list:
    """Five answers of the demo agent in two conversations. chat.chat_turn runs an event loop
    of its own, which Playwright's (running in this thread) forbids: ask from another thread."""
    from django.db import connection

    from agents.conversations import conversation_create
    from tests.support.turns import chat_turn

    def ask() -> list:
        try:
            turns = []
            for questions in CONVERSATIONS:
                conversation = conversation_create(deployment=deployment, user=user)
                for question in questions:
                    turn = chat_turn(
                        deployment=deployment,
                        user=user,
                        conversation=conversation,
                        message=question,
                        custom_inputs={},
                    )
                    assert turn.error == "", turn.error_detail
                    turns.append(turn)
            return turns
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(ask).result()


@pytest.fixture
def people(transactional_db, django_user_model):
    def make(name: str, role: str):
        user = django_user_model.objects.create_user(name, f"{name}@example.com", PASSWORD)
        user.groups.add(Group.objects.get(name=role))
        return user

    return make("boss", roles.ADMIN), make("rita", roles.REVIEWER), make("bob", roles.REVIEWER)


def log_in(page: Page, live_server, username: str) -> None:
    """With the keyboard: the username field has the focus when the page opens."""
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/login/")
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def tab_to(page: Page, text: str, limit: int = 60) -> None:
    """Press Tab until the focused element's text starts with `text`."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        if focused.startswith(text):
            return
    raise AssertionError(f"Tab never reached {text!r}")


def work_through(page: Page, live_server, session, items, plans, button="Start") -> None:
    """From /review/, Start (or Continue), then label each item with the keys in `plans` (one
    list per item: keys to press, or ("type", text)); the last key saves and opens the next."""
    page.goto(f"{live_server.url}/review/")
    tab_to(page, button)
    page.keyboard.press("Enter")
    for item, plan in zip(items, plans, strict=True):
        heading = page.locator("#item-heading")
        expect(heading).to_have_text(re.compile(rf"^Item {item.pk}\b"))
        expect(heading).to_be_focused()
        for step in plan:
            if isinstance(step, tuple):
                page.keyboard.type(step[1])
            else:
                page.keyboard.press(step)
    expect(page).to_have_url(f"{live_server.url}/review/sessions/{session.pk}/")
    expect(page.get_by_text("Nothing left for you in this session.")).to_be_visible()


def records_by_source(demo_agent, endpoint: str, expected: int) -> dict:
    """{(source id, request id): newest record}, once `expected` pairs arrived."""
    deadline = time.monotonic() + DELIVERED_TIMEOUT_S
    while True:
        found = {}
        for entry in demo_agent.records(endpoint):
            record = entry["record"]
            found[(record["source"]["id"], record["request_id"])] = record
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_two_reviewers_label_a_session_by_keyboard_and_an_admin_settles(
    page: Page, live_server, people, demo_deployment, demo_agent, celery_worker_on_redis
):
    boss = people[0]
    turns = demo_turns(demo_deployment, boss)
    built_in_schemas()
    LabelSchema.objects.create(
        name="tone", title="Tone?", input_type="categorical", options=["ok", "rude"]
    )
    session = services.session_save(
        user=boss,
        data={
            "name": "Demo week",
            "instructions": "Judge **correctness** first.",
            "label_schemas": ["answer_correct", "tone", "expected_response"],
            "deployments": [demo_deployment.pk],
            "assigned_users": ["rita", "bob"],
            "reviewers_per_item": 2,
        },
    )
    services.items_add(session=session, user=boss, turns=turns)
    items = list(ReviewItem.objects.filter(session=session).order_by("pk"))

    # Rita: yes and "ok" everywhere; a comment on the first item (Ctrl+Enter saves from it).
    log_in(page, live_server, "rita")
    first = ["1", "Tab", "1", "c", ("type", RITA_COMMENT), "Control+Enter"]
    work_through(page, live_server, session, items, [first] + [["1", "Tab", "1", "Enter"]] * 4)

    # Bob: "no" on the third item and "rude" on the fifth; a better answer on the second
    # (Escape leaves the text box, Enter saves); a look at the keys and instructions first.
    log_in(page, live_server, "bob")
    page.goto(f"{live_server.url}/review/")
    tab_to(page, "Start")
    page.keyboard.press("Enter")
    expect(page.locator("#item-heading")).to_be_focused()
    page.keyboard.press("?")
    expect(page.locator("#keys-dialog")).to_be_visible()
    expect(page.locator("#keys-dialog")).to_contain_text("Save and go to the next item")
    page.keyboard.press("Escape")
    page.keyboard.press("i")
    expect(page.locator("#instructions-dialog strong")).to_have_text("correctness")
    page.keyboard.press("Escape")
    expect(page.locator("#instructions-dialog")).to_be_hidden()
    bob_plans = [
        ["1", "Tab", "1", "Enter"],
        ["1", "Tab", "1", "e", ("type", BOB_BETTER), "Escape", "Enter"],
        ["2", "Tab", "1", "Enter"],
        ["1", "Tab", "1", "Enter"],
        ["1", "Tab", "2", "Enter"],
    ]
    # He holds the first item now: /review/ offers to continue with it.
    work_through(page, live_server, session, items, bob_plans, button="Continue")

    # Going back with k shows Bob's label and keeps a change as a new version (j/k by keys).
    page.goto(f"{live_server.url}/review/sessions/{session.pk}/items/{items[4].pk}/")
    expect(page.locator("#item-heading")).to_be_focused()
    page.keyboard.press("k")
    expect(page.locator("#item-heading")).to_have_text(re.compile(rf"^Item {items[3].pk}\b"))
    expect(page.get_by_role("radio", name="Yes")).to_be_checked()
    page.keyboard.press("j")
    expect(page.locator("#item-heading")).to_have_text(re.compile(rf"^Item {items[4].pk}\b"))
    expect(page.get_by_role("radio", name="rude")).to_be_checked()

    # The admin: 100 %, agreement, and the two disagreements; settles the third item.
    log_in(page, live_server, "boss")
    page.goto(f"{live_server.url}/review/sessions/{session.pk}/")
    expect(page.locator(".progress-line").first).to_contain_text("10 / 10 labels (100 %)")
    heading = page.get_by_role("heading", name="Agreement", exact=True)
    agreement = page.locator("section", has=heading)
    expect(agreement.get_by_text("Cohen's κ").first).to_be_visible()
    expect(agreement.get_by_text("Krippendorff's α (nominal)").first).to_be_visible()
    rows = page.locator("article.disagreement")
    expect(rows).to_have_count(2)
    third = page.locator(f"#item-{items[2].pk}")
    expect(third).to_contain_text("Is this response correct for your question?")
    third.get_by_text("Settle with a final label").click()
    third.get_by_role("radio", name="No").check()
    third.get_by_role("radio", name="ok").check()
    third.get_by_role("button", name=re.compile("Save the final label")).click()
    expect(page.get_by_text(f"Settled item {items[2].pk}")).to_be_visible()
    third = page.locator(f"#item-{items[2].pk}")
    expect(third.locator(".settled")).to_contain_text("Settled by boss")
    expect(third.locator(".settled-row")).to_contain_text("negative")

    # What reached the demo agent's feedback endpoint: each reviewer's label of each turn, and
    # the admin's final label.
    endpoint = endpoint_name(demo_deployment)
    got = records_by_source(demo_agent, endpoint, expected=11)
    ids = [t.databricks_request_id for t in turns]
    for who in ("rita@example.com", "bob@example.com"):
        for request_id in ids:
            assert (who, request_id) in got, f"no record of {who} for {request_id}"

    def said(who: str, n: int, name: str) -> str:
        return got[(who, ids[n])]["text_assessments"][0]["ratings"][name]["value"]

    assert [said("bob@example.com", n, "answer_correct") for n in range(5)] == [
        "positive",
        "positive",
        "negative",
        "positive",
        "positive",
    ]
    assert said("bob@example.com", 4, "tone") == "rude"
    assert said("rita@example.com", 2, "answer_correct") == "positive"
    rita_first = got[("rita@example.com", ids[0])]["text_assessments"][0]
    assert rita_first["free_text_comment"] == RITA_COMMENT
    assert got[("bob@example.com", ids[1])]["text_assessments"][0]["suggested_output"] == BOB_BETTER
    final = got[("consensus:boss@example.com", ids[2])]["text_assessments"][0]
    assert final["ratings"] == {"answer_correct": {"value": "negative"}, "tone": {"value": "ok"}}


def test_a_failed_save_keeps_everything_typed_and_says_why(
    page: Page, live_server, people, deployment_factory
):
    """Refused (a required answer missing, the session closed), a server error and a network
    failure: the inputs stay as typed and the alert says why in words; a reload or a visit to
    another item brings the unsaved draft back; a save that works drops it."""
    from review.models import ReviewSession
    from tests.support.turns import logged_turn

    boss = people[0]
    built_in_schemas()
    LabelSchema.objects.create(
        name="tone", title="Tone?", input_type="categorical", options=["ok", "rude"], required=True
    )
    bot = deployment_factory(display_name="Bot")
    session = services.session_save(
        user=boss,
        data={
            "name": "Drafts",
            "label_schemas": ["answer_correct", "tone"],
            "deployments": [bot.pk],
            "assigned_users": ["rita"],
        },
    )
    turns = [logged_turn(bot, boss, request=f"Question {n}") for n in range(2)]
    services.items_add(session=session, user=boss, turns=turns)
    first, second = ReviewItem.objects.filter(session=session).order_by("pk")
    url = f"{live_server.url}/review/sessions/{session.pk}/items/{first.pk}/"
    log_in(page, live_server, "rita")
    page.goto(url)
    errors = page.locator("#label-errors")
    comment = page.get_by_label("Overall comment")
    yes = page.get_by_role("radio", name="Yes")
    rude = page.get_by_role("radio", name="rude")

    page.keyboard.press("1")
    page.keyboard.press("c")
    page.keyboard.type("My careful comment.")
    page.keyboard.press("Control+Enter")
    expect(errors).to_contain_text("“Tone?”: required")
    expect(errors).to_have_attribute("role", "alert")
    expect(comment).to_have_value("My careful comment.")
    expect(yes).to_be_checked()
    assert page.url == url

    page.reload()
    expect(page.locator(".draft-note")).to_contain_text("Restored what you typed")
    expect(comment).to_have_value("My careful comment.")
    expect(yes).to_be_checked()
    page.keyboard.press("1")  # into the first question, then Tab to the next
    page.keyboard.press("Tab")
    page.keyboard.press("2")
    expect(rude).to_be_checked()

    def post_only(handler):
        return lambda route: handler(route) if route.request.method == "POST" else route.continue_()

    page.route(url, post_only(lambda route: route.abort()))
    page.keyboard.press("Enter")
    expect(errors).to_contain_text("the server could not be reached")
    page.unroute(url)
    page.route(url, post_only(lambda route: route.fulfill(status=500, body="boom")))
    page.keyboard.press("Enter")
    expect(errors).to_contain_text("the server failed (HTTP 500)")
    page.unroute(url)
    ReviewSession.objects.filter(pk=session.pk).update(state="closed")
    page.keyboard.press("Enter")
    expect(errors).to_contain_text("This review session is closed")
    expect(comment).to_have_value("My careful comment.")
    expect(yes).to_be_checked()
    expect(rude).to_be_checked()
    assert not first.turn.ratings.exists()

    ReviewSession.objects.filter(pk=session.pk).update(state="open")
    page.keyboard.press("Enter")
    expect(page.locator("#item-heading")).to_have_text(re.compile(rf"^Item {second.pk}\b"))
    expect(page.locator("#focus-status")).to_contain_text(f"Saved your label of item {first.pk}")
    rating = first.turn.ratings.get()
    assert rating.text_assessment == {
        "ratings": {"answer_correct": {"value": "positive"}, "tone": {"value": "rude"}},
        "free_text_comment": "My careful comment.",
    }

    # A draft on the second item survives a visit to the first; the saved first has none.
    page.keyboard.press("c")
    page.keyboard.type("Half a thought")
    page.keyboard.press("Escape")
    page.keyboard.press("k")
    expect(page.locator("#item-heading")).to_have_text(re.compile(rf"^Item {first.pk}\b"))
    expect(comment).to_have_value("My careful comment.")
    expect(page.locator(".draft-note")).to_have_count(0)
    page.keyboard.press("j")
    expect(page.locator("#item-heading")).to_have_text(re.compile(rf"^Item {second.pk}\b"))
    expect(comment).to_have_value("Half a thought")
    expect(page.locator(".draft-note")).to_be_visible()
