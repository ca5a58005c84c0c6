"""In Chromium: the dashboard draws its charts with no console error, in light and dark, and a
chart's table view holds the numbers the chart plots."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import Page, expect

from tests.chat.test_chat_browser import log_in
from tests.dashboards.test_dashboard import midnight, turn_at

pytestmark = [pytest.mark.browser]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_dashboard_renders_and_its_tables_hold_the_numbers(
    page: Page, live_server, transactional_db, django_user_model, deployment_factory, scheme
):
    rev = django_user_model.objects.create_user("rev", "rev@example.com", "a-long-password")
    rev.groups.add(Group.objects.get(name="reviewer"))
    bot = deployment_factory(display_name="Bot")
    for minutes, took in enumerate([120, 80, 100]):
        turn_at(bot, rev, midnight(1) + timedelta(hours=9, minutes=minutes), execution_time_ms=took)
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.emulate_media(color_scheme=scheme)
    log_in(page, live_server)
    page.goto(f"{live_server.url}/deployments/{bot.pk}/dashboard/?range=7d")
    latency = page.locator("figure.chart", has=page.get_by_text("Latency of answered turns"))
    expect(latency.locator("svg.chart-svg polyline")).to_have_count(3)  # p50, p95, p99
    latency.get_by_text("Table").click()
    yesterday = latency.locator(
        "tr", has=page.locator("th", has_text=midnight(1).date().isoformat())
    )
    expect(yesterday.locator("td").first).to_have_text("100.0 ms")  # p50 of 80, 100, 120
    turns = page.locator("figure.chart", has=page.get_by_text("Turns", exact=True))
    expect(turns.locator("circle title").filter(has_text=": 3")).to_have_count(1)
    assert errors == []
