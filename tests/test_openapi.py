"""The OpenAPI schema at /api/v1/schema/ is one a generated client can use: it is made without a
warning, it is a valid OpenAPI document, every component has its own name, and what the API
really answers matches it (no field left out of the schema, none missing from the answer)."""

import copy
import io

import pytest
from django.conf import settings
from django.core.management import call_command
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import validate as validate_spec

from feedback.models import LabelSchema, Rating
from tests.feedback.conftest import chat_turn, retriever_span_id

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def spec(django_db_blocker):
    with django_db_blocker.unblock():
        from drf_spectacular.generators import SchemaGenerator

        urlconf = settings.SPECTACULAR_SETTINGS["SERVE_URLCONF"]  # what /api/v1/schema/ serves
        return SchemaGenerator(urlconf=urlconf).get_schema(request=None, public=True)


def test_schema_generation_has_no_warning_and_validates(tmp_path):
    out = tmp_path / "schema.yaml"
    # --fail-on-warn raises on any warning: colliding component names, operationIds, enums.
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--urlconf",
        settings.SPECTACULAR_SETTINGS["SERVE_URLCONF"],
        "--file",
        str(out),
        stderr=io.StringIO(),
    )
    assert out.stat().st_size > 0


def test_the_served_schema_is_a_valid_openapi_document(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    validate_spec(response.json())


def test_request_bodies_have_components_of_their_own(spec):
    def body_schema(path, method):
        ref = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        return spec["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]

    chat = body_schema("/api/v1/deployments/{id}/chat/", "post")
    assert {"message", "messages", "custom_inputs", "stream"} <= set(chat["properties"])
    rating = body_schema("/api/v1/requests/{request_id}/assessments/", "post")
    assert {"text_assessments", "retrieval_assessments"} == set(rating["properties"])
    deployment = body_schema("/api/v1/deployments/", "post")
    assert "query_endpoint" in deployment["properties"]


def test_operation_ids_are_unique(spec):
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def _strict(schema: dict) -> dict:
    """The schema with every described object closed, so an answer's key that the schema
    does not name is an error (drf-spectacular leaves objects open)."""
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return schema


def assert_matches(spec, response, path: str, method: str = "get") -> dict:
    body = response.json()
    status = str(response.status_code)
    described = spec["paths"][path][method]["responses"][status]
    schema = described["content"]["application/json"]["schema"]
    root = _strict({**schema, "components": spec["components"]})
    errors = sorted(
        OAS31Validator(root, format_checker=oas31_format_checker).iter_errors(body),
        key=lambda e: list(e.absolute_path),
    )
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    return body


def test_deployment_answers_match_the_schema(spec, api_client, admin_user, deployment_factory):
    deployment = deployment_factory()
    api_client.force_authenticate(admin_user)
    assert_matches(spec, api_client.get("/api/v1/deployments/"), "/api/v1/deployments/")
    detail = api_client.get(f"/api/v1/deployments/{deployment.pk}/")
    assert_matches(spec, detail, "/api/v1/deployments/{id}/")
    created = api_client.post(
        "/api/v1/deployments/",
        {
            "model_name": "main.agents.new_bot",
            "model_version": "1",
            "query_endpoint": "https://host.example.com/serving-endpoints/x/invocations",
        },
        format="json",
    )
    assert_matches(spec, created, "/api/v1/deployments/", "post")


@pytest.mark.integration
def test_chat_request_and_rating_answers_match_the_schema(
    spec, api_client, reviewer, demo_deployment
):
    api_client.force_authenticate(reviewer)
    chat = f"/api/v1/deployments/{demo_deployment.pk}/chat/"
    answered = api_client.post(chat, {"message": "What is MLflow?"}, format="json")
    assert answered.status_code == 200, answered.content
    turn = assert_matches(spec, answered, "/api/v1/deployments/{id}/chat/", "post")
    refused = api_client.post(chat, {"message": "hi", "messages": []}, format="json")
    assert refused.status_code == 400

    request_id = turn["request_id"]
    for form in ("normalized", "raw", "none"):
        detail = api_client.get(f"/api/v1/requests/{request_id}/", {"trace": form})
        assert_matches(spec, detail, "/api/v1/requests/{request_id}/")
    assert_matches(spec, api_client.get("/api/v1/requests/"), "/api/v1/requests/")

    rated_turn = chat_turn(demo_deployment, reviewer, top_k=2)
    rating = api_client.post(
        f"/api/v1/requests/{rated_turn.databricks_request_id}/assessments/",
        {
            "text_assessments": [
                {"ratings": {"answer_correct": {"value": "negative"}}, "suggested_output": "X"}
            ],
            "retrieval_assessments": [
                {
                    "position": 1,
                    "step_id": retriever_span_id(rated_turn),
                    "ratings": {"chunk_relevance": {"value": "positive"}},
                }
            ],
        },
        format="json",
    )
    assert rating.status_code == 201, rating.content
    assert_matches(spec, rating, "/api/v1/requests/{request_id}/assessments/", "post")
    rating_id = Rating.objects.get().pk
    detail = api_client.get(f"/api/v1/assessments/{rating_id}/")
    assert_matches(spec, detail, "/api/v1/assessments/{id}/")
    rows = assert_matches(spec, api_client.get("/api/v1/assessments/"), "/api/v1/assessments/")
    assert len(rows["results"]) == 2  # the text assessment and the one rated document


def test_a_failed_turn_matches_the_schema(spec, api_client, admin_user, deployment_factory):
    from tests.support.servers import free_port

    down = deployment_factory(
        query_endpoint=f"http://127.0.0.1:{free_port()}/serving-endpoints/x/invocations",
        request_timeout_s=2,
    )
    api_client.force_authenticate(admin_user)
    failed = api_client.post(
        f"/api/v1/deployments/{down.pk}/chat/", {"message": "hi"}, format="json"
    )
    assert failed.status_code == 502
    assert_matches(spec, failed, "/api/v1/deployments/{id}/chat/", "post")


def test_label_schema_answers_match_the_schema(spec, api_client, admin_user, deployment_factory):
    deployment = deployment_factory()
    api_client.force_authenticate(admin_user)
    created = api_client.post(
        "/api/v1/label-schemas/",
        {
            "name": "score",
            "title": "Score?",
            "instruction": "Half points are fine.",
            "input_type": "numeric",
            "min_value": 1,
            "max_value": 5,
            "step": 0.5,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert_matches(spec, created, "/api/v1/label-schemas/", "post")
    tags = {
        "name": "tags",
        "title": "Tags?",
        "input_type": "categorical_list",
        "options": ["a", "b"],
    }
    api_client.post("/api/v1/label-schemas/", tags, format="json")
    listed = assert_matches(
        spec, api_client.get("/api/v1/label-schemas/"), "/api/v1/label-schemas/"
    )
    assert {"score", "tags"} <= {schema["name"] for schema in listed}
    detail = "/api/v1/label-schemas/{name}/"
    assert_matches(spec, api_client.get("/api/v1/label-schemas/tags/"), detail)
    changed = api_client.patch("/api/v1/label-schemas/tags/", {"required": True}, format="json")
    assert changed.status_code == 200, changed.content
    assert_matches(spec, changed, detail, "patch")
    deleted = api_client.delete("/api/v1/label-schemas/tags/")
    assert deleted.status_code == 204 and "204" in spec["paths"][detail]["delete"]["responses"]

    url = f"/api/v1/deployments/{deployment.pk}/label-schemas/"
    path = "/api/v1/deployments/{id}/label-schemas/"
    # The default question, whether an admin saved its wording or not (the migration makes it,
    # a flushed test database has it no more).
    assert_matches(spec, api_client.get(url), path)
    LabelSchema.objects.filter(name="answer_correct").delete()
    assert_matches(spec, api_client.get(url), path)
    replaced = api_client.put(url, {"label_schemas": ["score"]}, format="json")
    assert replaced.status_code == 200, replaced.content
    assert_matches(spec, replaced, path, "put")
    assert_matches(spec, api_client.get(url), path)


def test_agreement_answers_match_the_schema(
    spec, api_client, reviewer, admin_user, deployment_factory
):
    from feedback.services import rating_create
    from tests.support.turns import logged_turn

    deployment = deployment_factory()

    def both_rate(rita_says: str) -> None:
        turn = logged_turn(deployment, reviewer)
        for who, value in ((reviewer, rita_says), (admin_user, "positive")):
            rating_create(
                turn=turn,
                reviewer=who,
                text_assessments=[{"ratings": {"answer_correct": {"value": value}}}],
            )

    api_client.force_authenticate(reviewer)
    both_rate("positive")
    unanimous = assert_matches(spec, api_client.get("/api/v1/agreement/"), "/api/v1/agreement/")
    kappa = unanimous["questions"][0]["figures"][1]
    assert kappa["key"] == "cohens_kappa" and kappa["value"] is None  # 0/0: stated as null
    both_rate("negative")
    differ = assert_matches(spec, api_client.get("/api/v1/agreement/"), "/api/v1/agreement/")
    assert differ["questions"][0]["figures"][0]["value"] == 0.5


def test_review_session_answers_match_the_schema(
    spec, api_client, admin_user, reviewer, deployment_factory, django_user_model
):
    from review import queue
    from tests.review.sessions_support import label, make_reviewer, make_session
    from tests.support.turns import logged_turn

    bot = deployment_factory()
    bob = make_reviewer(django_user_model, "bob")
    session, _ = make_session(admin_user, bot, [reviewer, bob], turns=2, per_item=2)
    base = "/api/v1/review-sessions/"
    one = base + "{id}/"
    api_client.force_authenticate(admin_user)
    created = api_client.post(
        base,
        {
            "name": "Week 50",
            "label_schemas": ["answer_correct"],
            "deployments": [bot.pk],
            "assigned_groups": ["reviewer"],
            "due_at": "2026-12-24T12:00:00Z",
            "saved_filter": {"status": "failed"},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert_matches(spec, created, base, "post")
    closed = api_client.patch(f"{base}{session.pk}/", {"state": "closed"}, format="json")
    assert_matches(spec, closed, one, "patch")
    api_client.patch(f"{base}{session.pk}/", {"state": "open"}, format="json")
    added = api_client.post(
        f"{base}{session.pk}/items/",
        {"request_ids": [logged_turn(bot, admin_user).databricks_request_id]},
        format="json",
    )
    assert_matches(spec, added, one + "items/", "post")

    api_client.force_authenticate(reviewer)
    claimed = api_client.post(f"{base}{session.pk}/next/")
    item = assert_matches(spec, claimed, one + "next/", "post")
    labelled = api_client.post(
        f"{base}{session.pk}/items/{item['id']}/labels/",
        {"text_assessment": label("positive")},
        format="json",
    )
    assert labelled.status_code == 201, labelled.content
    assert_matches(spec, labelled, one + "items/{item_id}/labels/", "post")
    skipped = queue.item_next(session=session, reviewer=reviewer)
    assert api_client.post(f"{base}{session.pk}/items/{skipped.pk}/skip/").status_code == 204
    assert_matches(spec, api_client.get(base), base)
    assert_matches(spec, api_client.get(f"{base}{session.pk}/"), one)
    assert_matches(spec, api_client.get(f"{base}{session.pk}/items/"), one + "items/")
    mine = api_client.get(f"{base}{session.pk}/items/{item['id']}/")
    assert_matches(spec, mine, one + "items/{item_id}/")

    first = session.items.get(pk=item["id"])
    queue.item_next(session=session, reviewer=bob)
    queue.item_label_save(item=first, reviewer=bob, text_assessment=label("negative"))
    api_client.force_authenticate(admin_user)
    settled = api_client.post(
        f"{base}{session.pk}/items/{item['id']}/settle/",
        {"text_assessment": label("negative")},
        format="json",
    )
    assert settled.status_code == 201, settled.content
    assert_matches(spec, settled, one + "items/{item_id}/settle/", "post")
    everyone = api_client.get(f"{base}{session.pk}/items/{item['id']}/")
    assert len(assert_matches(spec, everyone, one + "items/{item_id}/")["labels"]) == 2
    agreement = api_client.get(f"{base}{session.pk}/agreement/")
    assert assert_matches(spec, agreement, one + "agreement/")["label_schemas"]
    differ = api_client.get(f"{base}{session.pk}/disagreements/")
    assert len(assert_matches(spec, differ, one + "disagreements/")) == 1
