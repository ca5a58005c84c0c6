"""JSON nested too deep on the pages (issue 10, item 5): the chat form, the custom_inputs
editor's check, the admin's JSON fields, and an agent's reply nested too deep, streamed or not
(the demo agent's `simulate.malformed: too_deep` answers custom_outputs 5,000 lists deep)."""

import pytest
from django.contrib import admin
from django.test import RequestFactory

from agents.models import Deployment, RequestLog
from feedback.admin import LabelSchemaAdmin
from feedback.models import LabelSchema
from tests.chat.test_streaming import SCHEMAS, sent, streamed

pytestmark = pytest.mark.django_db

TOO_DEEP = "JSON nested deeper than 64 levels."
DEEP_INPUTS = '{"x": ' + "[" * 5000 + "]" * 5000 + "}"
DEEP_REPLY = {"simulate": {"malformed": "too_deep"}}


@pytest.fixture
def make_deployment(deployment_factory, demo_agent):
    def make(schema: str, **fields) -> Deployment:
        endpoint = SCHEMAS[schema]
        url = f"{demo_agent.url}/serving-endpoints/{endpoint}/invocations"
        return deployment_factory(query_endpoint=url, agent_schema=schema, **fields)

    return make


@pytest.fixture
def page_client(client):
    client.raise_request_exception = False  # answer as a server would: a 500, not a raise
    return client


def test_the_chat_form_refuses_custom_inputs_nested_5000_deep(
    page_client, stakeholder, demo_deployment
):
    page_client.force_login(stakeholder)
    data = {"message": "Hi", "custom_inputs": DEEP_INPUTS}
    send = page_client.post(f"/chat/{demo_deployment.pk}/send/", data, HTTP_HX_REQUEST="true")
    assert send.status_code == 200
    assert f"custom_inputs is {TOO_DEEP}" in send.content.decode()
    assert send["HX-Retarget"] == "#composer-error"
    stream = page_client.post(f"/chat/{demo_deployment.pk}/stream/", data)
    assert stream.status_code == 422 and f"custom_inputs is {TOO_DEEP}" in stream.content.decode()
    assert not RequestLog.objects.exists()


def test_the_editors_check_says_custom_inputs_are_nested_too_deep(
    page_client, stakeholder, demo_deployment
):
    page_client.force_login(stakeholder)
    check = f"/chat/{demo_deployment.pk}/custom-inputs/check/"
    html = page_client.post(check, {"custom_inputs": DEEP_INPUTS}).content.decode()
    assert 'data-valid="false"' in html and f"custom_inputs is {TOO_DEEP}" in html


def test_the_admin_json_fields_refuse_json_nested_too_deep(admin_user, deployment_factory):
    request = RequestFactory().post("/admin/")
    request.user = admin_user
    deployment = deployment_factory()
    deep = "[" * 3000 + "]" * 3000
    deployment_form = admin.site._registry[Deployment].get_form(request, deployment)
    form = deployment_form({"default_custom_inputs": deep, "custom_inputs_schema": deep})
    assert not form.is_valid()
    assert form.errors["default_custom_inputs"] == [TOO_DEEP]
    assert form.errors["custom_inputs_schema"] == [TOO_DEEP]
    assert deep in form.as_div()  # shown back as typed, beside the error
    schema_form = LabelSchemaAdmin(LabelSchema, admin.site).get_form(request)
    form = schema_form({"name": "q", "title": "Q?", "input_type": "categorical", "options": deep})
    assert not form.is_valid() and TOO_DEEP in form.errors["options"]


def test_an_agent_reply_nested_too_deep_is_a_failed_turn_kept_in_the_log(make_deployment, reviewer):
    turn = sent(make_deployment("chat_completions"), reviewer, **DEEP_REPLY)
    assert turn.error == f"The agent's answer is {TOO_DEEP[:-1]}; it was refused."
    assert turn.status_code == 502 and turn.response_raw.startswith('{"object": "chat.completion"')
    assert RequestLog.objects.get() == turn


def test_a_streamed_chunk_nested_too_deep_ends_the_turn_with_a_clear_error(
    make_deployment, reviewer
):
    deployment = make_deployment("chat_completions", streaming=True)
    _, turn = streamed(deployment, reviewer, **DEEP_REPLY)
    assert turn.error == f"The agent's answer is {TOO_DEEP[:-1]}; it was refused."
    assert RequestLog.objects.get() == turn


def test_the_chat_page_shows_a_too_deep_reply_as_an_error_and_stays_usable(
    page_client, stakeholder, make_deployment
):
    deployment = make_deployment("chat_completions")
    page_client.force_login(stakeholder)
    data = {"message": "Hi", "custom_inputs": '{"simulate": {"malformed": "too_deep"}}'}
    response = page_client.post(f"/chat/{deployment.pk}/send/", data, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "nested deeper than 64 levels; it was refused." in response.content.decode()
    again = page_client.post(
        f"/chat/{deployment.pk}/send/",
        {"message": "Hi", "custom_inputs": "{}"},
        HTTP_HX_REQUEST="true",
    )
    assert again.status_code == 200 and RequestLog.objects.filter(error="").count() == 1
