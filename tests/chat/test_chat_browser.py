"""End to end in Chromium: chat with the demo agent, read its trace, edit custom_inputs; and
agent-controlled text that tries to run script comes out as plain text."""

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.integration]
PAYLOAD = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


@pytest.fixture
def reviewer_login(transactional_db, django_user_model):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("rev", "rev@example.com", "a-long-password")
    user.groups.add(Group.objects.get(name="reviewer"))
    return user


def log_in(page: Page, live_server) -> None:
    page.goto(f"{live_server.url}/login/?next=/deployments/")  # a reviewer's home is /review/
    page.get_by_label("Username").fill("rev")
    page.get_by_label("Password").fill("a-long-password")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/deployments/"))


def test_chat_trace_and_custom_inputs_end_to_end(
    page: Page, live_server, reviewer_login, demo_deployment
):
    log_in(page, live_server)
    page.get_by_role("link", name="Open chat").click()
    expect(page.get_by_role("heading", name="Demo RAG agent")).to_be_visible()

    page.get_by_label("Message").fill("What is MLflow tracing?")
    page.keyboard.press("Enter")
    answer = page.locator(".msg--assistant").first
    expect(answer).to_contain_text("MLflow Tracing records every step")
    expect(page.get_by_label("Message")).to_have_value("")
    expect(page).to_have_url(re.compile(r"\?c=[0-9a-f-]{36}$"))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy = page.locator(".turn-meta [data-copy]")
    copy.click()
    expect(copy).to_have_text("Copied")
    request_id = page.locator(".turn-meta code").first.inner_text()
    assert page.evaluate("navigator.clipboard.readText()") == request_id

    page.locator(".trace > summary").first.click()
    retriever = page.get_by_role("button", name=re.compile(r"^RETRIEVER retrieve_docs"))
    expect(retriever).to_be_visible()
    retriever.click()
    documents = page.locator(".documents .document")
    expect(documents.first).to_contain_text("chunk")
    assert documents.count() >= 1

    page.get_by_label("Edit custom_inputs").click()
    editor = page.get_by_label("custom_inputs (JSON)")
    editor.fill('{"top_k": 2, "style": }')
    status = page.locator("#custom-inputs-status")
    expect(status).to_contain_text("Line 1, column 23")
    page.get_by_label("Message").fill("Tell me about the review app")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#composer-error")).to_contain_text("Fix custom_inputs first")
    assert page.locator(".turn").count() == 1  # nothing was sent

    editor.fill('{"top_k": 2, "style": "bullets"}')
    expect(status).to_contain_text("Valid JSON object.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".turn")).to_have_count(2)
    last = page.locator(".turn").last
    last.locator(".custom-outputs > summary").click()
    expect(last.locator(".custom-outputs pre")).to_contain_text('"style": "bullets"')


def test_agent_text_with_script_is_shown_not_run(
    page: Page, live_server, reviewer_login, demo_deployment
):
    log_in(page, live_server)
    page.goto(f"{live_server.url}/chat/{demo_deployment.pk}/")
    page.get_by_label("Edit custom_inputs").click()
    # The demo agent's "detailed" style repeats the question inside its answer.
    page.get_by_label("custom_inputs (JSON)").fill('{"style": "detailed"}')
    expect(page.locator("#custom-inputs-status")).to_contain_text("Valid JSON object.")
    page.get_by_label("Message").fill(f"What is {PAYLOAD}?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".msg--assistant").first
    expect(answer).to_contain_text("<script>window.pwned=2</script>")
    page.locator(".trace > summary").first.click()
    page.get_by_role("button", name=re.compile(r"^AGENT ")).click()
    expect(page.locator(".span-detail")).to_contain_text("onerror=")
    assert page.evaluate("window.pwned") is None
    assert page.locator(".msg--assistant img, .span-detail img").count() == 0


def test_a_document_with_script_is_shown_not_run(
    page: Page, live_server, reviewer_login, demo_deployment
):
    from agents.models import Conversation, RequestLog
    from tests.support.mlflow_traces import HOSTILE_TEXT, make_trace

    conversation = Conversation.objects.create(deployment=demo_deployment, user=reviewer_login)
    RequestLog.objects.create(
        deployment=demo_deployment,
        user=reviewer_login,
        conversation=conversation,
        databricks_request_id="hostile-request",
        date="2026-11-22",
        timestamp_ms=0,
        status_code=200,
        execution_time_ms=5,
        request="Q",
        response="A",
        trace=make_trace("hostile"),
    )
    log_in(page, live_server)
    page.goto(f"{live_server.url}/requests/hostile-request/")
    page.locator(".trace > summary").click()
    page.get_by_role("button", name=re.compile(r"^RETRIEVER vector_search")).click()
    document = page.locator(".documents .document").first
    expect(document).to_contain_text(HOSTILE_TEXT)
    expect(document).to_contain_text("javascript:window.pwned=3")
    assert document.locator("a").count() == 0  # a javascript: URI is never a link
    assert document.locator("img, script").count() == 0
    assert page.evaluate("window.pwned") is None


@pytest.mark.parametrize("streaming", [False, True])
def test_a_busy_app_says_so_under_the_message_box_and_keeps_the_message(
    page: Page,
    asgi_live_server,
    reviewer_login,
    deployment_factory,
    demo_agent,
    settings,
    streaming,
):
    from agents.models import Conversation, RequestLog

    endpoint = "agents_main-demo-chat_agent" if streaming else "agents_main-demo-rag_agent"
    deployment = deployment_factory(
        endpoint_name=endpoint,
        query_endpoint=f"{demo_agent.url}/serving-endpoints/{endpoint}/invocations",
        agent_schema="chat_agent" if streaming else "chat_completions",
        streaming=streaming,
    )
    settings.CHAT_MAX_TURNS_IN_FLIGHT = 0  # every turn is one too many
    page.goto(f"{asgi_live_server.url}/login/?next=/chat/{deployment.pk}/")
    page.get_by_label("Username").fill("rev")
    page.get_by_label("Password").fill("a-long-password")
    page.get_by_role("button", name="Log in").click()

    page.get_by_label("Message").fill("Anyone there?")
    page.keyboard.press("Enter")
    expect(page.locator("#composer-error")).to_contain_text("busy", timeout=10_000)
    expect(page.locator("#composer-error")).to_contain_text("Try again in 2 s")
    expect(page.get_by_label("Message")).to_have_value("Anyone there?")
    assert not RequestLog.objects.exists() and not Conversation.objects.exists()
