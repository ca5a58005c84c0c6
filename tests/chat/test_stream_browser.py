"""In Chromium, against the app under uvicorn: tokens show up before the answer is complete, and
the Stop button cuts a stream, keeping the partial answer marked incomplete."""

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from agents.models import RequestLog
from agents.turns import STOPPED

pytestmark = [pytest.mark.browser, pytest.mark.integration]
ENDPOINT = "agents_main-demo-chat_agent"
QUESTION = "How does the review app collect feedback?"


@pytest.fixture
def streaming_deployment(transactional_db, deployment_factory, demo_agent, django_user_model):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("rev", "rev@example.com", "a-long-password")
    user.groups.add(Group.objects.get(name="reviewer"))
    return deployment_factory(
        display_name="Streaming ChatAgent",
        endpoint_name=ENDPOINT,
        query_endpoint=f"{demo_agent.url}/serving-endpoints/{ENDPOINT}/invocations",
        agent_schema="auto",
        streaming=True,
        # Slow enough to watch: each word of the answer 120 ms after the one before.
        default_custom_inputs={"simulate": {"chunk_delay_ms": 120}},
    )


def open_chat(page: Page, server_url: str, deployment) -> None:
    page.goto(f"{server_url}/login/")
    page.get_by_label("Username").fill("rev")
    page.get_by_label("Password").fill("a-long-password")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/review/$"))  # a reviewer's home
    page.goto(f"{server_url}/chat/{deployment.pk}/")


def test_tokens_arrive_before_the_answer_completes(
    page: Page, asgi_live_server, streaming_deployment
):
    open_chat(page, asgi_live_server.url, streaming_deployment)
    page.get_by_label("Message").fill(QUESTION)
    page.keyboard.press("Enter")
    growing = page.locator("[data-streaming-answer]")
    expect(growing).not_to_have_text("", timeout=10_000)
    partial = growing.inner_text()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.locator(".output-item--tool_call")).to_contain_text("search_docs")

    expect(growing).to_have_count(0, timeout=30_000)  # replaced by the finished turn
    turn = RequestLog.objects.get()
    assert len(partial) < len(turn.response)
    answer = page.locator(f"#turn-{turn.databricks_request_id} .msg--assistant")
    expect(answer).to_contain_text(turn.response.split()[0])
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.locator(".rating-bar")).to_have_count(1)
    assert turn.incomplete is False and turn.error == ""


def test_the_stop_button_cuts_the_stream_and_keeps_the_partial_answer(
    page: Page, asgi_live_server, streaming_deployment, demo_agent
):
    open_chat(page, asgi_live_server.url, streaming_deployment)
    page.get_by_label("Message").fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    growing = page.locator("[data-streaming-answer]")
    expect(growing).to_contain_text(re.compile(r"\w+ \w+"), timeout=10_000)
    page.get_by_role("button", name="Stop").click()

    expect(page.get_by_text("Incomplete answer.")).to_be_visible(timeout=10_000)
    turn = RequestLog.objects.get()
    assert turn.incomplete is True and turn.error == STOPPED
    assert turn.response
    expect(page.locator(f"#turn-{turn.databricks_request_id}")).to_contain_text(
        turn.response.split()[0]
    )
    # The agent's whole answer is longer: the stream really stopped.
    question = {"messages": [{"role": "user", "content": QUESTION}]}
    whole = httpx.post(demo_agent.invocations_url(ENDPOINT), json=question, timeout=30).json()
    full = whole["messages"][-1]["content"]
    assert full.startswith(turn.response) and len(turn.response) < len(full)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
