"""In Chromium: log in, see the demo deployment, and check it with one htmx click."""

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def admin_with_password(transactional_db, django_user_model):
    django_user_model.objects.create_superuser("boss", "boss@example.com", "a-long-password")


def test_an_admin_logs_in_and_checks_the_demo_deployment(
    page: Page, live_server, admin_with_password, demo_deployment, tmp_path
):
    page.goto(f"{live_server.url}/deployments/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/deployments/"))
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill("a-long-password")
    page.get_by_role("button", name="Log in").click()

    row = page.locator(f"#deployment-{demo_deployment.pk}")
    expect(row).to_contain_text("Demo RAG agent")
    expect(row).to_contain_text("main.demo.rag_agent@1")
    expect(row).to_contain_text("Not checked yet")
    row.get_by_role("button", name="Check now").click()
    expect(page.locator(f"#deployment-{demo_deployment.pk}")).to_contain_text("Reachable")
    page.screenshot(path=str(tmp_path / "deployments.png"), full_page=True)

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/"))


def test_a_wrong_password_is_refused_with_a_message(page: Page, live_server, admin_with_password):
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("didn't match")
