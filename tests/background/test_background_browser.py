"""In Chromium, against the app under uvicorn and the real Agent Runtime: a background turn's
answer streams in; Stop stops watching, the page says the agent is still answering, and the
answer appears there by itself when the run ends, without a reload."""

import re

import pytest
from playwright.sync_api import Page, expect

from agents import databricks_auth
from agents.models import RequestLog

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def app_deployment(transactional_db, deployment_factory, agent_runtime_server, django_user_model):
    from django.contrib.auth.models import Group

    agent_runtime_server.reset()
    databricks_auth.forget_configs()
    user = django_user_model.objects.create_user("rev", "rev@example.com", "a-long-password")
    user.groups.add(Group.objects.get(name="reviewer"))
    return deployment_factory(
        display_name="Agent Bricks echo",
        model_name="apps.test.agent_bricks_browser",
        endpoint_kind="agent_runtime",
        query_endpoint=agent_runtime_server.url,
        auth_kind="databricks_m2m",
        databricks_host=agent_runtime_server.url,
        oauth_client_id=agent_runtime_server.client_id,
        auth_env_var=agent_runtime_server.secret_env_var,
        streaming=True,
        default_custom_inputs={"delay_s": 4},
    )


def test_stop_leaves_the_run_going_and_the_page_picks_up_its_answer(
    page: Page, asgi_live_server, app_deployment, agent_runtime_server
):
    page.goto(f"{asgi_live_server.url}/login/")
    page.get_by_label("Username").fill("rev")
    page.get_by_label("Password").fill("a-long-password")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/review/$"))
    page.goto(f"{asgi_live_server.url}/chat/{app_deployment.pk}/")

    page.get_by_label("Message").fill("one two three four five six")
    page.get_by_role("button", name="Send").click()
    growing = page.locator("[data-streaming-answer]")
    expect(growing).to_contain_text("Echo:", timeout=15_000)
    page.get_by_role("button", name="Stop").click()

    expect(page.get_by_text("The agent is answering in the background.")).to_be_visible(
        timeout=10_000
    )
    turn = RequestLog.objects.get()
    article = page.locator(f"#turn-{turn.databricks_request_id}")
    expect(article).to_contain_text(turn.agent_run_id)
    expect(article.locator(".msg--assistant")).to_contain_text(
        "Echo: one two three four five six", timeout=30_000
    )
    expect(page.get_by_text("The agent is answering in the background.")).to_have_count(0)
    expect(article.locator(".rating-bar")).to_have_count(1)
    turn.refresh_from_db()
    assert turn.agent_run_state == "finished" and turn.error == ""
    assert agent_runtime_server.stats()["invocations"] == {turn.agent_run_id: 1}
