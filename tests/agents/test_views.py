"""The deployments page: who sees what, filters, and the admin actions."""

import pytest

from agents.models import Deployment

pytestmark = pytest.mark.django_db
PAGE = "/deployments/"


def test_it_requires_a_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={PAGE}"


def test_login_and_logout_work(client, stakeholder):
    response = client.post(
        "/login/", {"username": stakeholder.username, "password": "pw-" + stakeholder.username}
    )
    assert response.status_code == 302
    assert client.get(PAGE).status_code == 200
    client.post("/logout/")
    assert client.get(PAGE).status_code == 302


def test_admins_see_every_deployment_with_manage_links(client, admin_user, deployment_factory):
    enabled = deployment_factory(display_name="Enabled bot")
    disabled = deployment_factory(display_name="Sleeping bot", enabled=False)
    client.force_login(admin_user)
    html = client.get(PAGE).content.decode()
    assert "Enabled bot" in html and "Sleeping bot" in html
    assert f"/admin/agents/deployment/{enabled.pk}/change/" in html
    assert f"/deployments/{disabled.pk}/enabled/" in html
    assert "Add deployment" in html


def test_stakeholders_see_only_what_they_may_use_and_no_manage_links(
    client, stakeholder, deployment_factory, django_user_model
):
    deployment_factory(display_name="Open bot")
    deployment_factory(display_name="Disabled bot", enabled=False)
    private = deployment_factory(display_name="Private bot")
    private.allowed_users.set([django_user_model.objects.create_user("someone-else")])
    client.force_login(stakeholder)
    html = client.get(PAGE).content.decode()
    assert "Open bot" in html
    assert "Disabled bot" not in html and "Private bot" not in html
    assert "/admin/" not in html and "Check now" not in html


def test_a_group_grant_opens_a_private_deployment(client, stakeholder, deployment_factory):
    from django.contrib.auth.models import Group

    private = deployment_factory(display_name="Team bot")
    private.allowed_groups.set([Group.objects.get(name="stakeholder")])
    client.force_login(stakeholder)
    assert "Team bot" in client.get(PAGE).content.decode()


def test_it_shows_model_at_version_endpoint_requests_and_last_use(
    client, admin_user, deployment_factory
):
    deployment_factory(model_name="main.sales.bot", model_version="7")
    client.force_login(admin_user)
    html = client.get(PAGE).content.decode()
    assert "main.sales.bot@7" in html
    assert "agents_main-sales-bot" in html
    assert "never" in html  # no request yet
    assert "Not checked yet" in html


def test_it_filters_by_model_and_version_and_renders_only_rows_for_htmx(
    client, admin_user, deployment_factory
):
    deployment_factory(model_name="main.a.bot", model_version="1", display_name="A one")
    deployment_factory(model_name="main.a.bot", model_version="2", display_name="A two")
    deployment_factory(model_name="main.b.bot", model_version="1", display_name="B one")
    client.force_login(admin_user)
    html = client.get(PAGE, {"model_name": "main.a.bot", "model_version": "2"}).content.decode()
    assert "A two" in html and "A one" not in html and "B one" not in html
    fragment = client.get(
        PAGE, {"q": "B one"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="deployment-rows"
    )
    body = fragment.content.decode()
    assert "B one" in body and "A two" not in body
    assert "<html" not in body  # a fragment, not the whole page


def test_empty_states_say_what_to_do(client, admin_user, stranger):
    client.force_login(admin_user)
    assert "No deployments yet" in client.get(PAGE).content.decode()
    client.force_login(stranger)
    assert "no role yet" in client.get(PAGE).content.decode()


def test_an_admin_disables_and_enables_a_deployment(client, admin_user, deployment_factory):
    deployment = deployment_factory()
    client.force_login(admin_user)
    response = client.post(f"/deployments/{deployment.pk}/enabled/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "disabled" in response.content.decode()
    assert not Deployment.objects.get().enabled
    client.post(f"/deployments/{deployment.pk}/enabled/")
    assert Deployment.objects.get().enabled


def test_only_admins_may_toggle_or_check(client, reviewer, deployment_factory):
    deployment = deployment_factory()
    client.force_login(reviewer)
    assert client.post(f"/deployments/{deployment.pk}/enabled/").status_code == 403
    assert client.post(f"/deployments/{deployment.pk}/check/").status_code == 403
    assert Deployment.objects.get().enabled
    assert client.get(f"/deployments/{deployment.pk}/enabled/").status_code == 405


def test_check_now_shows_the_demo_agent_reachable(client, admin_user, demo_deployment):
    client.force_login(admin_user)
    response = client.post(f"/deployments/{demo_deployment.pk}/check/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Reachable" in response.content.decode()
    demo_deployment.refresh_from_db()
    assert demo_deployment.health_status == "reachable"
    assert demo_deployment.health_checked_at is not None


def test_the_chat_page_shows_sanitized_reviewer_instructions(
    client, stakeholder, deployment_factory
):
    deployment = deployment_factory(
        reviewer_instructions="**Be kind.** <script>alert(1)</script> [x](javascript:alert(1))"
    )
    client.force_login(stakeholder)
    html = client.get(f"/chat/{deployment.pk}/").content.decode()
    assert "<strong>Be kind.</strong>" in html
    assert "<script>alert(1)" not in html
    assert 'href="javascript:' not in html


def test_the_chat_page_is_404_for_a_deployment_one_may_not_use(
    client, stakeholder, deployment_factory
):
    deployment = deployment_factory(enabled=False)
    client.force_login(stakeholder)
    assert client.get(f"/chat/{deployment.pk}/").status_code == 404
    assert client.get("/chat/99999/").status_code == 404


def test_the_pager_keeps_the_filters(client, admin_user, deployment_factory):
    for _ in range(51):
        deployment_factory(model_version="2")
    client.force_login(admin_user)
    html = client.get("/deployments/?model_version=2&q=bot").content.decode()
    assert "Page 1 of 2" in html
    assert 'href="?page=2&amp;q=bot&amp;model_name=&amp;model_version=2"' in html
