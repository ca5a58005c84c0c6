"""Deployment validation: bad input gets a clear error and nothing is saved."""

import pytest
from django.core.exceptions import ValidationError

from agents import services
from agents.models import Deployment

pytestmark = pytest.mark.django_db

VALID = {
    "model_name": "main.agents.rag_bot",
    "model_version": "3",
    "query_endpoint": "https://host.example.com/serving-endpoints/agents_main-agents-rag_bot/invocations",
}


def create(**overrides) -> Deployment:
    return services.deployment_create(**{**VALID, **overrides})


def errors_of(**overrides) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        create(**overrides)
    assert Deployment.objects.count() == 0, "an invalid deployment must not be saved"
    return caught.value.message_dict


def test_it_derives_names_as_databricks_does():
    deployment = create()
    assert deployment.endpoint_name == "agents_main-agents-rag_bot"
    assert deployment.served_entity_name == "main-agents-rag_bot_3"
    assert deployment.display_name == "main.agents.rag_bot@3"
    assert deployment.review_app_url.endswith(f"/chat/{deployment.pk}/")
    assert deployment.review_app_url.startswith("http")


def test_it_derives_the_databricks_feedback_endpoint():
    deployment = create(feedback_sink="databricks_feedback")
    assert deployment.effective_feedback_endpoint == (
        "https://host.example.com/serving-endpoints/agents_main-agents-rag_bot/"
        "served-models/feedback/invocations"
    )


@pytest.mark.parametrize(
    "name", ["rag_bot", "main.rag_bot", "main..bot", "a.b.c.d", "main.agents.bot!"]
)
def test_it_rejects_a_model_name_that_is_not_catalog_schema_model(name):
    assert "catalog.schema.model" in errors_of(model_name=name)["model_name"][0]


@pytest.mark.parametrize("version", ["v1", "", "1.0", "-1"])
def test_it_rejects_a_version_that_is_not_a_number(version):
    assert "model_version" in errors_of(model_version=version)


@pytest.mark.parametrize(
    "url",
    ["ftp://host/x", "javascript:alert(1)", "host.example.com/invocations", "file:///etc/passwd"],
)
def test_it_accepts_only_http_urls(url):
    assert "http" in errors_of(query_endpoint=url)["query_endpoint"][0]


def test_it_refuses_credentials_inside_a_url():
    message = errors_of(query_endpoint="https://token:dapi123@host.example.com/x")[
        "query_endpoint"
    ][0]
    assert "credentials" in message
    assert "dapi123" not in message


def test_a_duplicate_model_version_is_refused_and_nothing_is_saved():
    create()
    with pytest.raises(ValidationError) as caught:
        create(display_name="second")
    assert "already exists" in str(caught.value)
    assert Deployment.objects.count() == 1


def test_the_mlflow_sink_needs_the_tracking_server_url():
    assert "feedback_endpoint" in errors_of(feedback_sink="mlflow_assessments")


def test_a_token_from_the_environment_needs_the_variable_name():
    assert "auth_env_var" in errors_of(auth_kind="env_token")
    assert (
        "environment variable"
        in errors_of(auth_kind="env_token", auth_env_var="not a name")["auth_env_var"][0]
    )


def test_default_custom_inputs_must_be_an_object():
    assert "JSON object" in errors_of(default_custom_inputs=[1, 2])["default_custom_inputs"][0]


def test_an_invalid_json_schema_is_refused():
    message = errors_of(custom_inputs_schema={"type": "no-such-type"})["custom_inputs_schema"][0]
    assert message.startswith("Not a valid JSON Schema")


def test_default_custom_inputs_must_match_the_schema():
    schema = {"type": "object", "properties": {"top_k": {"type": "integer", "maximum": 10}}}
    message = errors_of(custom_inputs_schema=schema, default_custom_inputs={"top_k": 50})[
        "default_custom_inputs"
    ][0]
    assert "top_k" in message


def test_timeouts_are_bounded():
    assert "request_timeout_s" in errors_of(request_timeout_s=0)
    assert "request_timeout_s" in errors_of(request_timeout_s=3600)
