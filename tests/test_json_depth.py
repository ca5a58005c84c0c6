"""JSON nested too deep (issue 10, item 5), wherever it comes in through an API, and the JSON
errors every /api/ URL answers: 400 for bad input, 404 for an unknown URL, 500 for a failure,
under WSGI (the test client) and under ASGI (the app `make run` serves), never an HTML page."""

import json

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from agents.models import Deployment, RequestLog
from feedback.models import DeploymentLabelSchema, LabelSchema, Rating
from reviewapp import jsonlimits
from tests.support.turns import logged_turn
from tests.test_asgi import run_in_own_loop

TOO_DEEP = "JSON nested deeper than 64 levels."


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    return response.json()


@pytest.fixture
def api(api_client):
    api_client.raise_request_exception = False  # answer as a server would: a 500, not a raise
    return api_client


# --- the measure ----------------------------------------------------------------------------


def decoded_depth(value) -> int:
    depth, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            depth = max(depth, level)
            stack.extend(
                (v, level + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return depth


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, {"b": "[[[[{{{{"}]},
        {"escaped": 'q"\\"]]]]}}', "back": "\\", "json": json.dumps({"x": [[["]"]]]})},
        [
            [
                [
                    [
                        [
                            [
                                [
                                    [
                                        [
                                            [
                                                [
                                                    [
                                                        '\\\\\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['
                                                    ]
                                                ]
                                            ]
                                        ]
                                    ]
                                ]
                            ]
                        ]
                    ]
                ]
            ]
        ],
        {"ü€": ["\n\t/\b\f\r\u005c[", "", '""', 'e\\"e'] * 30},
    ],
)
def test_the_measure_matches_the_decoded_depth_whatever_the_strings_hold(value):
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=2)):
        depth = decoded_depth(value)
        for limit in range(max(0, depth - 2), depth + 2):
            assert jsonlimits.nests_deeper_than(text, limit) is (depth > limit)


def test_a_text_deeper_than_pythons_own_limit_is_refused_not_a_recursion_error():
    for text in (nested(5000), "[" * 5000, '{"a":' * 3000 + "1" + "}" * 3000):
        with pytest.raises(jsonlimits.JSONTooDeep, match=TOO_DEEP):
            jsonlimits.loads(text)
    assert jsonlimits.loads(nested(64)) == json.loads(nested(64))


# --- API bodies -----------------------------------------------------------------------------


def test_the_chat_api_refuses_custom_inputs_nested_5000_deep(api, stakeholder, deployment_factory):
    deployment = deployment_factory()
    api.force_authenticate(stakeholder)
    body = f'{{"message": "Hi", "custom_inputs": {{"x": {nested(5000)}}}}}'
    response = api.post(
        f"/api/v1/deployments/{deployment.pk}/chat/", body, content_type="application/json"
    )
    assert TOO_DEEP in assert_json_error(response, 400)["detail"]
    assert not RequestLog.objects.exists()


def test_the_chat_api_refuses_too_deep_custom_inputs_sent_as_a_form(
    api, stakeholder, deployment_factory
):
    deployment = deployment_factory()
    api.force_authenticate(stakeholder)
    response = api.post(
        f"/api/v1/deployments/{deployment.pk}/chat/",
        {"message": "Hi", "custom_inputs": nested(5000)},
        format="multipart",
    )
    assert assert_json_error(response, 400)["custom_inputs"] == [TOO_DEEP]


def test_the_deployments_api_refuses_a_body_nested_3000_deep(api, admin_user, deployment_factory):
    deployment = deployment_factory(display_name="Before")
    api.force_authenticate(admin_user)
    body = f'{{"display_name": "After", "default_custom_inputs": {{"x": {nested(3000)}}}}}'
    for method, url in [
        ("post", "/api/v1/deployments/"),
        ("patch", f"/api/v1/deployments/{deployment.pk}/"),
    ]:
        response = getattr(api, method)(url, body, content_type="application/json")
        assert TOO_DEEP in assert_json_error(response, 400)["detail"]
    form = {"display_name": "After", "default_custom_inputs": nested(3000)}
    response = api.patch(f"/api/v1/deployments/{deployment.pk}/", form, format="multipart")
    assert assert_json_error(response, 400)["default_custom_inputs"] == [TOO_DEEP]
    assert Deployment.objects.get().display_name == "Before"


def test_the_assessments_api_refuses_a_body_nested_3000_deep(api, reviewer, deployment_factory):
    turn = logged_turn(deployment_factory(), reviewer)
    api.force_authenticate(reviewer)
    url = f"/api/v1/requests/{turn.databricks_request_id}/assessments/"
    body = f'{{"text_assessments": [{{"ratings": {nested(3000)}}}]}}'
    response = api.post(url, body, content_type="application/json")
    assert TOO_DEEP in assert_json_error(response, 400)["detail"]
    response = api.post(url, {"text_assessments": nested(3000)}, format="multipart")
    assert assert_json_error(response, 400)["text_assessments"] == [TOO_DEEP]
    assert not Rating.objects.exists()


def test_the_label_schema_apis_refuse_a_body_nested_3000_deep(api, admin_user, deployment_factory):
    deployment = deployment_factory()
    api.force_authenticate(admin_user)
    before = list(LabelSchema.objects.values_list("name", flat=True))
    body = f'{{"name": "q", "title": "Q?", "input_type": "categorical", "options": {nested(3000)}}}'
    response = api.post("/api/v1/label-schemas/", body, content_type="application/json")
    assert TOO_DEEP in assert_json_error(response, 400)["detail"]
    body = f'{{"label_schemas": [{nested(3000)}]}}'
    response = api.put(
        f"/api/v1/deployments/{deployment.pk}/label-schemas/", body, content_type="application/json"
    )
    assert TOO_DEEP in assert_json_error(response, 400)["detail"]
    assert list(LabelSchema.objects.values_list("name", flat=True)) == before
    assert not DeploymentLabelSchema.objects.exists()


# --- errors Django answers itself under /api/ ------------------------------------------------


def test_an_unknown_api_url_is_a_json_404(api, stakeholder):
    api.force_authenticate(stakeholder)
    assert assert_json_error(api.get("/api/v1/no-such-thing/"), 404) == {"detail": "Not found."}
    assert api.get("/no-such-page/")["Content-Type"].startswith("text/html")  # pages stay HTML


@pytest.fixture
def deployments_table_gone():
    """A real failure no API handles: the deployments table is missing (say, a migration not
    run), so every query on it raises. The test's transaction, rolled back, renames it back
    (on PostgreSQL the failed query aborts that transaction, so no statement may follow)."""
    table = Deployment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_gone")


def test_an_unexpected_failure_under_api_is_a_json_500(api, stakeholder, deployments_table_gone):
    api.force_authenticate(stakeholder)
    body = assert_json_error(api.get("/api/v1/deployments/"), 500)
    assert body["detail"].startswith("Internal server error")
    assert "agents_deployment" not in json.dumps(body)  # no internals in the answer


# --- the same under ASGI ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_under_asgi_too_deep_is_a_400_unknown_a_404_and_a_failure_a_json_500(
    stakeholder, deployment_factory
):
    import httpx

    from reviewapp import asgi

    deployment = deployment_factory()
    headers = {"Authorization": f"Token {Token.objects.create(user=stakeholder).key}"}
    chat_body = f'{{"message": "Hi", "custom_inputs": {{"x": {nested(5000)}}}}}'

    async def requests() -> dict:
        transport = httpx.ASGITransport(app=asgi.application, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", headers=headers
        ) as client:
            return {
                "deep": await client.post(
                    f"/api/v1/deployments/{deployment.pk}/chat/",
                    content=chat_body,
                    headers={"Content-Type": "application/json"},
                ),
                "unknown": await client.get("/api/v1/no-such-thing/"),
            }

    got = run_in_own_loop(requests)
    assert got["deep"].status_code == 400 and TOO_DEEP in got["deep"].json()["detail"]
    assert got["unknown"].status_code == 404 and got["unknown"].json() == {"detail": "Not found."}

    async def failing() -> dict:
        transport = httpx.ASGITransport(app=asgi.application, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", headers=headers
        ) as client:
            return {"list": await client.get("/api/v1/deployments/")}

    table = Deployment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_gone")
    try:
        got = run_in_own_loop(failing)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table}_gone RENAME TO {table}")
    assert got["list"].status_code == 500
    assert got["list"].headers["content-type"].startswith("application/json")
    assert got["list"].json()["detail"].startswith("Internal server error")
