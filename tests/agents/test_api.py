"""The deployments REST API: list/filter like databricks.agents, permissions, validation."""

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from agents.models import Deployment

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/deployments/"
NEW = {
    "model_name": "main.agents.rag_bot",
    "model_version": "2",
    "query_endpoint": "https://host.example.com/serving-endpoints/agents_main-agents-rag_bot/invocations",
    "feedback_sink": "databricks_feedback",
    "agent_schema": "chat_completions",
}


def test_anonymous_callers_get_401(api_client, deployment_factory):
    deployment_factory()
    response = api_client.get(LIST_URL)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


def test_token_auth_works_with_drf_create_token(api_client, admin_user, deployment_factory, capsys):
    deployment = deployment_factory()
    call_command("drf_create_token", admin_user.username)
    token = Token.objects.get(user=admin_user).key
    assert token in capsys.readouterr().out
    response = api_client.get(LIST_URL, HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["id"] == deployment.pk
    assert api_client.get(LIST_URL, HTTP_AUTHORIZATION="Token wrong").status_code == 401


def test_a_revoked_token_or_a_deactivated_user_is_refused_on_the_next_call(
    api_client, admin_user, deployment_factory
):
    """Tokens are answered from a per-process cache (reviewapp.authentication): a change must
    still take effect at once."""
    deployment_factory()
    token = Token.objects.create(user=admin_user)
    auth = {"HTTP_AUTHORIZATION": f"Token {token.key}"}
    assert api_client.get(LIST_URL, **auth).status_code == 200
    admin_user.is_active = False
    admin_user.save()
    assert api_client.get(LIST_URL, **auth).status_code == 401
    admin_user.is_active = True
    admin_user.save()
    assert api_client.get(LIST_URL, **auth).status_code == 200
    token.delete()
    assert api_client.get(LIST_URL, **auth).status_code == 401


def test_it_lists_with_databricks_field_names(api_client, admin_user, deployment_factory):
    deployment = deployment_factory(feedback_sink="databricks_feedback")
    api_client.force_authenticate(admin_user)
    [row] = api_client.get(LIST_URL).json()["results"]
    for field in (
        "model_name",
        "model_version",
        "endpoint_name",
        "served_entity_name",
        "query_endpoint",
        "endpoint_url",
        "review_app_url",
        "feedback_endpoint",
        "agent_schema",
    ):
        assert field in row
    assert row["review_app_url"].endswith(f"/chat/{deployment.pk}/")
    assert row["feedback_destination"]["endpoint"].endswith("/served-models/feedback/invocations")


def test_it_filters_by_model_name_and_version(api_client, admin_user, deployment_factory):
    deployment_factory(model_name="main.a.bot", model_version="1")
    wanted = deployment_factory(model_name="main.a.bot", model_version="2")
    deployment_factory(model_name="main.b.bot", model_version="2")
    api_client.force_authenticate(admin_user)
    by_name = api_client.get(LIST_URL, {"model_name": "main.a.bot"}).json()["results"]
    assert {row["model_version"] for row in by_name} == {"1", "2"}
    both = api_client.get(LIST_URL, {"model_name": "main.a.bot", "model_version": "2"}).json()
    assert [row["id"] for row in both["results"]] == [wanted.pk]


def test_stakeholders_see_only_enabled_deployments_open_to_them(
    api_client, stakeholder, reviewer, deployment_factory
):
    open_one = deployment_factory()
    deployment_factory(enabled=False)
    only_for_reviewer = deployment_factory()
    only_for_reviewer.allowed_users.set([reviewer])
    api_client.force_authenticate(stakeholder)
    ids = [row["id"] for row in api_client.get(LIST_URL).json()["results"]]
    assert ids == [open_one.pk]
    assert api_client.get(f"{LIST_URL}{only_for_reviewer.pk}/").status_code == 404
    api_client.force_authenticate(reviewer)
    ids = {row["id"] for row in api_client.get(LIST_URL).json()["results"]}
    assert ids == {open_one.pk, only_for_reviewer.pk}


def test_users_without_a_role_see_nothing(api_client, stranger, deployment_factory):
    deployment = deployment_factory()
    api_client.force_authenticate(stranger)
    assert api_client.get(LIST_URL).json()["results"] == []
    assert api_client.get(f"{LIST_URL}{deployment.pk}/").status_code == 404


def test_a_stakeholder_cannot_create_change_or_delete(api_client, stakeholder, deployment_factory):
    deployment = deployment_factory()
    api_client.force_authenticate(stakeholder)
    assert api_client.post(LIST_URL, NEW, format="json").status_code == 403
    assert (
        api_client.patch(
            f"{LIST_URL}{deployment.pk}/", {"enabled": False}, format="json"
        ).status_code
        == 403
    )
    assert api_client.delete(f"{LIST_URL}{deployment.pk}/").status_code == 403
    assert Deployment.objects.count() == 1
    assert Deployment.objects.get().enabled


def test_an_admin_creates_updates_and_deletes(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    created = api_client.post(LIST_URL, NEW, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["endpoint_name"] == "agents_main-agents-rag_bot"
    assert body["served_entity_name"] == "main-agents-rag_bot_2"
    detail = f"{LIST_URL}{body['id']}/"
    changed = api_client.patch(
        detail, {"display_name": "RAG bot", "request_timeout_s": 300}, format="json"
    )
    assert changed.status_code == 200
    assert changed.json()["display_name"] == "RAG bot"
    assert Deployment.objects.get().request_timeout_s == 300
    assert api_client.delete(detail).status_code == 204
    assert not Deployment.objects.exists()


def test_invalid_input_gets_field_errors_and_saves_nothing(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    response = api_client.post(
        LIST_URL,
        {**NEW, "model_name": "rag_bot", "query_endpoint": "ftp://host/x"},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()) >= {"model_name", "query_endpoint"}
    assert not Deployment.objects.exists()


def test_a_duplicate_model_version_is_a_400(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    assert api_client.post(LIST_URL, NEW, format="json").status_code == 201
    response = api_client.post(LIST_URL, NEW, format="json")
    assert response.status_code == 400
    assert Deployment.objects.count() == 1


def test_model_level_rules_come_back_as_400(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    response = api_client.post(
        LIST_URL, {**NEW, "feedback_sink": "mlflow_assessments"}, format="json"
    )
    assert response.status_code == 400
    assert "feedback_endpoint" in response.json()


def test_a_token_is_never_accepted_or_echoed(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    response = api_client.post(LIST_URL, {**NEW, "token": "dapi-secret-123"}, format="json")
    assert response.status_code == 400
    assert "environment variable" in response.json()["token"][0]
    assert "dapi-secret-123" not in response.content.decode()
    assert not Deployment.objects.exists()


def test_unknown_ids_are_404(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    assert api_client.get(f"{LIST_URL}99999/").status_code == 404
    assert (
        api_client.patch(f"{LIST_URL}99999/", {"enabled": False}, format="json").status_code == 404
    )


def test_the_openapi_schema_and_docs_are_served_without_a_cdn(client, admin_user):
    client.force_login(admin_user)
    schema = client.get("/api/v1/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/deployments/" in schema.content
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "drf_spectacular_sidecar" in html
    assert "cdn" not in html.lower()
