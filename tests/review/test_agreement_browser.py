"""In Chromium: the Agreement panel loads when opened, and its link lists the disagreements with
each reviewer's answer."""

import re

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import Page, expect

from feedback import services as feedback_services
from tests.chat.test_chat_browser import log_in
from tests.support.turns import logged_turn

pytestmark = [pytest.mark.browser]


def test_the_agreement_panel_opens_and_leads_to_the_disagreements(
    page: Page, live_server, transactional_db, django_user_model, deployment_factory
):
    reviewer_group = Group.objects.get(name="reviewer")
    rev = django_user_model.objects.create_user("rev", "rev@example.com", "a-long-password")
    bob = django_user_model.objects.create_user("bob", "bob@example.com", "a-long-password")
    for user in (rev, bob):
        user.groups.add(reviewer_group)
    bot = deployment_factory(display_name="Bot A")
    for rev_says in ("positive", "negative", "positive"):
        turn = logged_turn(bot, rev)
        for who, value in ((rev, rev_says), (bob, "positive")):
            feedback_services.rating_create(
                turn=turn,
                reviewer=who,
                text_assessments=[{"ratings": {"answer_correct": {"value": value}}}],
            )
    log_in(page, live_server)
    page.goto(f"{live_server.url}/requests/")
    panel = page.locator("details.agreement-panel")
    expect(panel.get_by_text("Krippendorff's α (nominal)")).to_have_count(0)  # not loaded yet
    panel.get_by_text("Agreement between reviewers").click()
    expect(panel.get_by_text("Krippendorff's α (nominal)")).to_be_visible()
    expect(panel.get_by_text("3 turns with two or more answers, from 2 reviewers")).to_be_visible()
    panel.get_by_role("link", name="show disagreements").click()
    expect(page).to_have_url(re.compile(r"disagree=answer_correct"))
    rows = page.locator(".requests-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".side-by-side")).to_contain_text("rev → negative")
    expect(rows.first.locator(".side-by-side")).to_contain_text("bob → positive")
