"""Where a deployment's ratings go: the sink follows the endpoint kind unless an admin chose one,
and the pages and the API say where that is ("kept here only" when nowhere)."""

import pytest

from agents.models import Deployment

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/deployments/"
QUERY = "https://host.example.com/serving-endpoints/agents_main-agents-rag_bot/invocations"
DERIVED_FEEDBACK = (
    "https://host.example.com/serving-endpoints/agents_main-agents-rag_bot/"
    "served-models/feedback/invocations"
)
NEW = {"model_name": "main.agents.rag_bot", "model_version": "2", "query_endpoint": QUERY}


def create(api_client, **fields) -> dict:
    response = api_client.post(LIST_URL, {**NEW, **fields}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_databricks_deployment_made_by_the_api_forwards_to_its_feedback_endpoint(
    api_client, admin_user
):
    api_client.force_authenticate(admin_user)
    body = create(api_client, endpoint_kind="databricks")
    assert body["feedback_sink"] == "auto"
    assert body["feedback_destination"] == {
        "sink": "databricks_feedback",
        "endpoint": DERIVED_FEEDBACK,
        "description": "Databricks feedback endpoint at host.example.com",
    }
    assert Deployment.objects.get().effective_feedback_sink == "databricks_feedback"


def test_an_explicit_feedback_endpoint_is_kept_and_used(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    mine = "https://other.example.com/serving-endpoints/x/served-models/feedback/invocations"
    body = create(api_client, endpoint_kind="databricks", feedback_endpoint=mine)
    assert body["feedback_endpoint"] == mine
    assert body["feedback_destination"]["sink"] == "databricks_feedback"
    assert body["feedback_destination"]["endpoint"] == mine


def test_an_agent_server_sends_ratings_to_its_tracking_server(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    body = create(
        api_client,
        endpoint_kind="mlflow_agent_server",
        query_endpoint="http://agents.example.com/invocations",
        mlflow_tracking_uri="http://mlflow.example.com:5000",
    )
    assert body["feedback_destination"]["sink"] == "mlflow_assessments"
    assert body["feedback_destination"]["endpoint"] == "http://mlflow.example.com:5000"


def test_an_openai_compatible_endpoint_keeps_ratings_here(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    body = create(api_client, endpoint_kind="openai_compatible", openai_model="llama")
    assert body["feedback_destination"] == {
        "sink": "none",
        "endpoint": "",
        "description": "kept here only",
    }


def test_an_explicit_choice_wins_over_the_kind(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    body = create(api_client, endpoint_kind="databricks", feedback_sink="none")
    assert body["feedback_destination"]["sink"] == "none"
    changed = api_client.patch(
        f"{LIST_URL}{body['id']}/", {"endpoint_kind": "openai_compatible"}, format="json"
    ).json()
    assert changed["feedback_sink"] == "none"


def test_the_default_follows_a_changed_endpoint_kind(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    body = create(api_client, endpoint_kind="databricks")
    changed = api_client.patch(
        f"{LIST_URL}{body['id']}/",
        {"endpoint_kind": "mlflow_agent_server", "mlflow_tracking_uri": "http://mlflow.internal.example.com:5000"},
        format="json",
    ).json()
    assert changed["feedback_destination"]["sink"] == "mlflow_assessments"
    assert changed["feedback_destination"]["endpoint"] == "http://mlflow.internal.example.com:5000"


def test_the_admin_form_defaults_to_the_endpoint_kind(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "", "pw"))
    form = client.get("/admin/agents/deployment/add/").content.decode()
    assert '<option value="auto" selected>Default for the endpoint kind</option>' in form


def test_the_deployments_page_says_where_ratings_go(client, admin_user, deployment_factory):
    deployment_factory(display_name="Databricks bot")
    deployment_factory(display_name="Local bot", endpoint_kind="openai_compatible")
    client.force_login(admin_user)
    html = client.get("/deployments/").content.decode()
    assert "to the Databricks feedback endpoint at workspace.example.com" in html
    assert "kept here only" in html
