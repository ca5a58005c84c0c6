"""The chat page and its fragments: sending, conversations, custom_inputs checks, permissions."""

import pytest

from agents.conversations import conversation_create
from agents.models import Conversation, RequestLog

pytestmark = pytest.mark.django_db


def chat_url(deployment, suffix=""):
    return f"/chat/{deployment.pk}/{suffix}"


def post_message(client, deployment, message="What is MLflow tracing?", **fields):
    data = {"message": message, "custom_inputs": '{"top_k": 2}', **fields}
    return client.post(chat_url(deployment, "send/"), data, HTTP_HX_REQUEST="true")


def test_the_page_shows_instructions_the_editor_and_the_defaults(
    client, stakeholder, demo_deployment
):
    demo_deployment.reviewer_instructions = "**Be thorough.**"
    demo_deployment.default_custom_inputs = {"top_k": 4}
    demo_deployment.save()
    client.force_login(stakeholder)
    html = client.get(chat_url(demo_deployment)).content.decode()
    assert "<strong>Be thorough.</strong>" in html
    assert "&quot;top_k&quot;: 4" in html  # prefilled from the deployment's default
    assert "No conversations yet." in html


def test_sending_starts_a_conversation_and_swaps_in_the_answer(
    client, stakeholder, demo_deployment
):
    client.force_login(stakeholder)
    response = post_message(client, demo_deployment)
    assert response.status_code == 200
    html = response.content.decode()
    conversation = Conversation.objects.get()
    turn = RequestLog.objects.get()
    assert "<html" not in html
    assert f'id="turn-{turn.databricks_request_id}"' in html
    assert "MLflow Tracing records every step" in html
    assert "custom_outputs" in html
    assert f"/requests/{turn.databricks_request_id}/trace/" in html
    assert f'value="{conversation.pk}" hx-swap-oob="true"' in html
    assert response["HX-Push-Url"] == f"{chat_url(demo_deployment)}?c={conversation.pk}"
    page = client.get(f"{chat_url(demo_deployment)}?c={conversation.pk}").content.decode()
    assert "What is MLflow tracing?" in page and 'aria-current="page"' in page


def test_a_second_message_continues_the_conversation(client, stakeholder, demo_deployment):
    client.force_login(stakeholder)
    post_message(client, demo_deployment)
    conversation = Conversation.objects.get()
    response = post_message(
        client, demo_deployment, "And more?", conversation_id=str(conversation.pk)
    )
    assert "HX-Push-Url" not in response
    assert conversation.turns.count() == 2


def test_invalid_custom_inputs_show_an_error_and_send_nothing(client, stakeholder, demo_deployment):
    client.force_login(stakeholder)
    response = post_message(client, demo_deployment, custom_inputs='{"top_k": 2,\n "style": }')
    assert response["HX-Retarget"] == "#composer-error"
    assert "Line 2, column 11" in response.content.decode()
    assert not RequestLog.objects.exists() and not Conversation.objects.exists()


@pytest.mark.parametrize("suffix", ["send/", "stream/"])
def test_past_the_cap_a_send_is_refused_with_503_and_nothing_is_written(
    client, stakeholder, demo_deployment, settings, suffix
):
    settings.CHAT_MAX_TURNS_IN_FLIGHT = 0
    client.force_login(stakeholder)
    data = {"message": "Hi", "custom_inputs": "{}"}
    response = client.post(chat_url(demo_deployment, suffix), data, HTTP_HX_REQUEST="true")
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response["HX-Retarget"] == "#composer-error"
    assert "busy" in response.content.decode()
    assert not RequestLog.objects.exists() and not Conversation.objects.exists()
    settings.CHAT_MAX_TURNS_IN_FLIGHT = 5
    assert post_message(client, demo_deployment).status_code == 200  # and it recovers


def test_the_editor_is_checked_while_typing(client, stakeholder, demo_deployment):
    demo_deployment.custom_inputs_schema = {
        "type": "object",
        "properties": {"top_k": {"type": "integer"}},
    }
    demo_deployment.save()
    client.force_login(stakeholder)
    check = chat_url(demo_deployment, "custom-inputs/check/")
    ok = client.post(check, {"custom_inputs": '{"top_k": 3}'}).content.decode()
    assert 'data-valid="true"' in ok
    bad = client.post(check, {"custom_inputs": '{"top_k": "three"}'}).content.decode()
    assert 'data-valid="false"' in bad and "At top_k: &#x27;three&#x27; is not of type" in bad
    not_object = client.post(check, {"custom_inputs": "[1]"}).content.decode()
    assert "must be a JSON object" in not_object


def test_an_agent_failure_is_shown_in_words_and_the_page_stays_usable(
    client, stakeholder, demo_deployment
):
    client.force_login(stakeholder)
    response = post_message(client, demo_deployment, custom_inputs='{"simulate": {"status": 500}}')
    html = response.content.decode()
    assert "The agent answered with an error (HTTP 500)." in html
    assert "Technical detail" in html
    assert post_message(client, demo_deployment).status_code == 200


def test_conversations_can_be_renamed(client, stakeholder, demo_deployment):
    conversation = conversation_create(deployment=demo_deployment, user=stakeholder)
    client.force_login(stakeholder)
    url = chat_url(demo_deployment, f"conversations/{conversation.pk}/rename/")
    assert "Budget questions" in client.post(url, {"title": "Budget questions"}).content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Budget questions"


def test_another_users_conversation_is_a_404(client, stakeholder, reviewer, demo_deployment):
    theirs = conversation_create(deployment=demo_deployment, user=reviewer)
    client.force_login(stakeholder)
    assert client.get(f"{chat_url(demo_deployment)}?c={theirs.pk}").status_code == 404
    response = post_message(client, demo_deployment, conversation_id=str(theirs.pk))
    assert response.status_code == 404
    rename = chat_url(demo_deployment, f"conversations/{theirs.pk}/rename/")
    assert client.post(rename, {"title": "x"}).status_code == 404
    assert not RequestLog.objects.exists()


def test_users_without_a_role_cannot_chat(client, stranger, demo_deployment):
    client.force_login(stranger)
    assert client.get(chat_url(demo_deployment)).status_code == 403
    assert post_message(client, demo_deployment).status_code == 403


def test_a_disabled_deployment_cannot_be_chatted_with(
    client, stakeholder, admin_user, demo_deployment
):
    demo_deployment.enabled = False
    demo_deployment.save()
    client.force_login(stakeholder)
    assert client.get(chat_url(demo_deployment)).status_code == 404
    client.force_login(admin_user)
    response = post_message(client, demo_deployment)
    assert "disabled" in response.content.decode()
    assert not RequestLog.objects.exists()
