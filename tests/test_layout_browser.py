"""In Chromium, on a 390 px phone and a 1,440 px desktop: no page of the app is wider than the
window (nothing makes the page scroll sideways), and the conversation list never covers the
chat's title, even with "Rename" open.

Each viewport walks the pages a reviewer and an admin use, with real content in them: the demo
agent's answer with its trace open and a retriever span's detail shown, the request page, a
request page with a long id and a 24-level trace all open, a rating's delivery that failed with
a long error and its attempts open, the login page, and the review pages (my sessions, a session
with a disagreement and its settle form open, focus mode with the trace open and its keys).
"""

import io
import re
from dataclasses import dataclass

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
# A sink error as long and unbroken as real ones are (an URL with a query string, no spaces).
LONG_ERROR = "HTTP 503 from https://workspace.example.com/" + "x" * 180 + "?retry=1"

# The elements that stick out of the viewport on the right, innermost first: what to fix. (Page
# coordinates: clicking something may have scrolled the page sideways.)
OVERFLOWING_ELEMENTS = """() => {
  const width = document.documentElement.clientWidth;
  const sticking = [...document.body.querySelectorAll("*")].filter(el => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.right + scrollX > width + 1;
  });
  return sticking
    .filter(el => !sticking.some(other => other !== el && el.contains(other)))
    .slice(0, 8)
    .map(el => `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}` +
               `${el.classList.length ? "." + [...el.classList].join(".") : ""}` +
               ` (right edge at ${Math.round(el.getBoundingClientRect().right + scrollX)} px)`);
}"""


# The parts of the conversation list (its buttons, links, the Rename form) that overlap the title.
SIDEBAR_PARTS_ON_TITLE = """() => {
  const title = document.querySelector("h1").getBoundingClientRect();
  const sidebar = document.querySelector("aside.conversations");
  return [sidebar, ...sidebar.querySelectorAll("*")].filter(el => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && box.left < title.right && title.left < box.right
      && box.top < title.bottom && title.top < box.bottom;
  }).map(el => el.tagName.toLowerCase() + (el.className ? "." + el.className : ""));
}"""


@dataclass
class Overflow:
    where: str
    scroll_width: int
    viewport_width: int
    culprits: list[str]

    def __str__(self) -> str:
        return (
            f"{self.where}: {self.scroll_width} px wide in a {self.viewport_width} px window; "
            f"sticking out: {', '.join(self.culprits) or 'nothing visible'}"
        )


class LayoutChecker:
    """Collects every page that is wider than the window, and every time the conversation list
    covers the title, so that one run lists them all; screenshots each of them."""

    def __init__(self, page: Page, tmp_path):
        self.page = page
        self.tmp_path = tmp_path
        self.problems: list[str] = []

    def screenshot(self, where: str) -> None:
        name = re.sub(r"\W+", "-", where)
        self.page.screenshot(path=str(self.tmp_path / f"{name}.png"), full_page=True)

    def check(self, where: str) -> None:
        page = self.page
        page.wait_for_load_state()  # the whole page and its stylesheet, not the first bytes
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        viewport_width = page.viewport_size["width"]
        if scroll_width > viewport_width:
            culprits = page.evaluate(OVERFLOWING_ELEMENTS)
            self.problems.append(str(Overflow(where, scroll_width, viewport_width, culprits)))
            self.screenshot(where)

    def check_sidebar(self, where: str) -> None:
        expect(self.page.locator("aside.conversations")).to_be_visible()
        covering = self.page.evaluate(SIDEBAR_PARTS_ON_TITLE)
        if covering:
            self.problems.append(f"{where}: the conversation list covers the title: {covering}")
            self.screenshot(where + " sidebar")


def open_the_whole_tree(page: Page) -> None:
    """Open every folded level of the span tree (deeper levels load when opened), then show
    the deepest span's detail."""
    rows = page.locator(".tree .span-row")
    expect(rows.first).to_be_visible()
    for _ in range(50):
        folded = page.locator(".tree details:not([open]) > summary")
        if folded.count() == 0:
            break
        shown = rows.count()
        folded.first.click()
        expect(rows).not_to_have_count(shown)
    deepest = page.locator(".span-row").last
    expect(deepest).to_contain_text("level_23")
    deepest.click()
    expect(page.locator(".span-detail h3")).to_contain_text("level_23")


@pytest.fixture
def demo_setup(transactional_db, demo_agent, settings, monkeypatch):
    """What `make run` sets up (its admin, the demo deployments with their instructions), with
    the demo agent of this test run; returns the first deployment, the one `make run` prints."""
    from django.core.management import call_command

    from agents.models import Deployment

    settings.DEMO_AGENT_URL = demo_agent.url
    monkeypatch.setenv("ADMIN_USERNAME", "boss")
    monkeypatch.setenv("ADMIN_PASSWORD", "a-long-password")
    call_command("bootstrap_demo", stdout=io.StringIO())
    return Deployment.objects.get(display_name="Demo RAG agent")


def fail_the_delivery(request_id: str) -> None:
    """What a sink that keeps refusing leaves behind: a failed delivery, its attempts logged."""
    from feedback.models import Delivery, DeliveryAttempt, DeliveryStatus

    delivery = Delivery.objects.get(rating__request__databricks_request_id=request_id)
    delivery.status = DeliveryStatus.FAILED
    delivery.attempts = 1
    delivery.last_error = LONG_ERROR
    delivery.save(update_fields=["status", "attempts", "last_error"])
    DeliveryAttempt.objects.create(
        delivery=delivery,
        started_at=timezone.now(),
        duration_ms=31,
        status_code=503,
        error=LONG_ERROR,
    )


def log_a_deep_trace(deployment, user) -> str:
    """A turn whose trace nests 24 spans deep (made by MLflow itself), as an agent of agents
    returns; its request id is as long as some gateways make them."""
    from tests.support.mlflow_traces import make_deep_trace
    from tests.support.turns import logged_turn

    request_id = "gateway-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c1e-retry-2"
    logged_turn(
        deployment,
        user,
        databricks_request_id=request_id,
        request="Which sub-agent answered?",
        response="The innermost one.",
        trace=make_deep_trace(24),
    )
    return request_id


def make_review_session(deployment, admin) -> tuple:
    """A session over the deployment's turns, two reviewers per item, with a long name and
    instructions; the admin and a reviewer disagree on the first item, the reviewer with a
    better answer as long and unbroken as an URL."""
    from django.contrib.auth.models import Group

    from agents.models import RequestLog
    from review import queue, services
    from review.models import ReviewItem
    from tests.review.test_review_browser import built_in_schemas

    built_in_schemas()
    rev = type(admin).objects.create_user("rev-layout", "rev-layout@example.com", "pw-layout")
    rev.groups.add(Group.objects.get(name="reviewer"))
    session = services.session_save(
        user=admin,
        data={
            "name": "Week 49: a long session name that has to wrap on a phone " + "x" * 40,
            "instructions": "Read the [guide](" + LONG_ERROR.split(" from ")[1] + ") first.",
            "label_schemas": ["answer_correct", "expected_facts", "expected_response"],
            "deployments": [deployment.pk],
            "assigned_users": [rev.get_username()],
            "reviewers_per_item": 2,
        },
    )
    turns = list(RequestLog.objects.filter(deployment=deployment).order_by("pk"))
    services.items_add(session=session, user=admin, turns=turns)
    item = ReviewItem.objects.filter(session=session).order_by("pk").first()
    said = {"ratings": {"answer_correct": {"value": "positive"}}}
    queue.item_label_save(item=item, reviewer=admin, text_assessment=said)
    said = {"ratings": {"answer_correct": {"value": "negative"}}, "suggested_output": LONG_ERROR}
    queue.item_label_save(item=item, reviewer=rev, text_assessment=said)
    return session, item


def open_trace_and_a_document_span(page: Page) -> None:
    page.locator(".trace > summary").first.click()
    retriever = page.get_by_role("button", name=re.compile(r"^RETRIEVER "))
    retriever.first.click()
    expect(page.locator(".documents .document").first).to_be_visible()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone-390", "desktop-1440"])
def test_no_page_is_wider_than_the_window(
    page: Page, live_server, demo_setup, django_user_model, viewport, tmp_path
):
    page.set_viewport_size(viewport)
    layout = LayoutChecker(page, tmp_path)

    page.goto(f"{live_server.url}/login/")
    layout.check("login")
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill("a-long-password")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/deployments/"))
    layout.check("deployments")

    page.goto(f"{live_server.url}/chat/{demo_setup.pk}/")
    expect(page.get_by_role("heading", name="Demo RAG agent")).to_be_visible()
    layout.check("empty chat")
    layout.check_sidebar("empty chat")

    page.get_by_label("Message").fill("What is MLflow tracing?")
    page.keyboard.press("Enter")
    expect(page.locator(".msg--assistant").first).to_contain_text("MLflow Tracing")
    expect(page).to_have_url(re.compile(r"\?c="))
    layout.check("chat with an answer")
    page.get_by_role("radio", name="Yes (thumbs up)").check()
    expect(page.locator(".rating-status")).to_contain_text("Saved")
    open_trace_and_a_document_span(page)
    layout.check("chat with the trace and a span open")

    page.reload()  # the conversation is now in the list, with its Rename
    page.locator(".rename > summary").click()
    expect(page.get_by_label("New name")).to_be_visible()
    layout.check("chat with Rename open")
    layout.check_sidebar("chat with Rename open")

    request_id = page.locator(".turn-meta code").first.inner_text()
    page.goto(f"{live_server.url}/requests/{request_id}/")
    open_trace_and_a_document_span(page)
    layout.check("request page with the trace and a span open")

    deep_request = log_a_deep_trace(demo_setup, django_user_model.objects.get(username="boss"))
    page.goto(f"{live_server.url}/requests/{deep_request}/")
    page.locator(".trace > summary").click()
    open_the_whole_tree(page)
    layout.check("request page with a 24-level trace all open")

    fail_the_delivery(request_id)
    page.goto(f"{live_server.url}/deliveries/")
    page.locator(".deliveries summary", has_text="Attempts").click()
    expect(page.locator(".attempts-table")).to_contain_text("503")
    layout.check("deliveries with attempts open")

    page.goto(f"{live_server.url}/requests/?status=answered&q=MLflow")
    expect(page.locator(".requests-table")).to_contain_text("MLflow")
    layout.check("requests with filters")

    session, item = make_review_session(demo_setup, django_user_model.objects.get(username="boss"))
    page.goto(f"{live_server.url}/review/")
    expect(page.locator(".session-card")).to_have_count(1)
    layout.check("review sessions")
    page.goto(f"{live_server.url}/review/sessions/{session.pk}/")
    page.locator(".settle > summary").click()
    expect(page.locator(".settle .label-form")).to_be_visible()
    layout.check("review session with a disagreement and its settle form open")
    page.goto(f"{live_server.url}/review/sessions/{session.pk}/items/{item.pk}/")
    expect(page.locator("#item-heading")).to_be_focused()
    layout.check("focus mode")
    open_trace_and_a_document_span(page)
    layout.check("focus mode with the trace and a span open")
    page.keyboard.press("Escape")  # the span row had the focus; the keys work on the page
    page.locator("#item-heading").focus()
    page.keyboard.press("?")
    expect(page.locator("#keys-dialog")).to_be_visible()
    layout.check("focus mode's keys")

    assert not layout.problems, "\n".join(layout.problems) + f"\n(screenshots in {tmp_path})"
