"""Configuration as code: a YAML manifest of label schemas, deployments and review sessions
applied idempotently (all or nothing), its dry run, its prune, its export (which applies back
to no change and holds no secret), and the CLI's errors by file line."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rest_framework.authtoken.models import Token

from agents.models import Deployment
from feedback.models import LabelSchema
from manifests import selectors, services
from review.models import ReviewSession
from reviewapp import roles
from tests.conftest import _make_user

pytest_plugins = ["tests.support.asgi_server"]
REVIEWAPP = str(Path(sys.executable).parent / "reviewapp")

MANIFEST = """\
version: 1
label_schemas:
  - name: correct
    title: Is the answer correct?
    input_type: thumbs
  - name: tone
    title: How is the tone?
    input_type: categorical
    options: [friendly, neutral, rude]
deployments:
  - name: rag
    model_name: main.demo.rag_agent
    model_version: "1"
    query_endpoint: http://127.0.0.1:8001/serving-endpoints/agents_main-demo-rag_agent/invocations
    agent_schema: chat_completions
    auth_kind: env_token
    auth_env_var: DEMO_AGENT_TOKEN
    allowed_users: [rita]
    label_schemas: [correct, tone]
review_sessions:
  - name: Weekly review
    deployments: [rag]
    label_schemas: [correct]
    assigned_users: [rita]
    reviewers_per_item: 2
"""


@pytest.fixture
def rita(django_user_model):
    return _make_user(django_user_model, "rita", roles.REVIEWER)


def test_apply_creates_then_changes_nothing_and_export_round_trips(db, admin_user, rita,
                                                                    monkeypatch):  # fmt: skip
    monkeypatch.setenv("DEMO_AGENT_TOKEN", "s3cret-value")
    manifest = yaml.safe_load(MANIFEST)
    changes = services.manifest_apply(user=admin_user, manifest=manifest)
    assert [(c.kind, c.key, c.action) for c in changes] == [
        ("label_schemas", "correct", "create"),
        ("label_schemas", "tone", "create"),
        ("deployments", "main.demo.rag_agent@1", "create"),
        ("review_sessions", "Weekly review", "create"),
    ]
    deployment = Deployment.objects.get()
    assert deployment.display_name == "rag" and list(deployment.allowed_users.all()) == [rita]
    assert selectors.deployment_dict(deployment)["label_schemas"] == ["correct", "tone"]
    session = ReviewSession.objects.get()
    assert session.reviewers_per_item == 2 and list(session.deployments.all()) == [deployment]
    assert services.manifest_apply(user=admin_user, manifest=manifest) == []  # idempotent
    exported = selectors.manifest_export()
    assert "s3cret-value" not in yaml.safe_dump(exported)
    assert exported["deployments"][0]["auth_env_var"] == "DEMO_AGENT_TOKEN"
    assert services.manifest_apply(user=admin_user, manifest=exported) == []  # round trip

    manifest["deployments"][0]["request_timeout_s"] = 120
    dry = services.manifest_apply(user=admin_user, manifest=manifest, dry_run=True)
    assert [c.as_dict() for c in dry] == [{
        "kind": "deployments", "key": "main.demo.rag_agent@1", "action": "update",
        "fields": {"request_timeout_s": [60, 120]},
    }]  # fmt: skip
    assert Deployment.objects.get().request_timeout_s == 60  # a dry run changes nothing


def test_one_bad_object_applies_nothing_and_names_its_field(db, admin_user, rita, reviewer):
    manifest = yaml.safe_load(MANIFEST)
    manifest["deployments"][0]["query_endpoint"] = "not a url"
    manifest["review_sessions"][0]["label_schemas"] = ["missing"]
    with pytest.raises(services.ValidationError) as refused:
        services.manifest_apply(user=admin_user, manifest=manifest)
    errors = refused.value.message_dict
    # The session names the deployment that failed: both are reported, at once.
    assert set(errors) >= {"deployments[0].query_endpoint", "review_sessions[0].deployments"}
    assert not LabelSchema.objects.filter(name="correct").exists()  # nor the good ones
    manifest = yaml.safe_load(MANIFEST)
    manifest["deployments"][0]["colour"] = "blue"
    manifest["label_schemas"][0]["input_type"] = "stars"
    with pytest.raises(services.ValidationError) as refused:
        services.manifest_apply(user=admin_user, manifest=manifest)
    assert "deployments[0]" in refused.value.message_dict  # unknown key, from the JSON Schema
    assert "label_schemas[0].input_type" in refused.value.message_dict
    with pytest.raises(services.PermissionDenied):
        services.manifest_apply(user=reviewer, manifest=yaml.safe_load(MANIFEST))


def test_prune_deletes_what_a_section_no_longer_names(db, admin_user, rita):
    manifest = yaml.safe_load(MANIFEST)
    services.manifest_apply(user=admin_user, manifest=manifest)
    # Every label schema there is (the built-in ones too, as `export` writes them); no session.
    schemas = selectors.manifest_export()["label_schemas"]
    smaller = {"version": 1, "review_sessions": [], "label_schemas": schemas}
    changes = services.manifest_apply(user=admin_user, manifest=smaller, prune=True)
    assert [(c.kind, c.action) for c in changes] == [("review_sessions", "delete")]
    assert Deployment.objects.exists()  # the file has no deployments section: untouched


def cli(server, token, tmp_path, *args, stdin=None):
    env = {"REVIEWAPP_URL": server.url, "REVIEWAPP_TOKEN": token, "PATH": "/usr/bin:/bin",
           "COLUMNS": "200"}  # fmt: skip
    return subprocess.run([REVIEWAPP, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, stdin=stdin)  # fmt: skip


def test_the_cli_applies_exports_and_reports_lines(asgi_live_server, admin_user, rita, tmp_path):
    token = Token.objects.create(user=admin_user).key
    (tmp_path / "app.yml").write_text(MANIFEST.replace("input_type: thumbs", "input_type: 5"))
    refused = cli(asgi_live_server, token, tmp_path, "apply", "-f", "app.yml")
    assert refused.returncode == 2
    assert "app.yml:5: label_schemas[0].input_type:" in refused.stderr
    (tmp_path / "app.yml").write_text(MANIFEST)
    dry = cli(asgi_live_server, token, tmp_path, "apply", "-f", "app.yml", "--dry-run")
    assert dry.returncode == 0 and "+ deployments main.demo.rag_agent@1 (create)" in dry.stdout
    assert not Deployment.objects.exists()
    applied = cli(asgi_live_server, token, tmp_path, "apply", "-f", "app.yml")
    assert applied.returncode == 0 and "4 object(s) changed." in applied.stdout
    again = cli(asgi_live_server, token, tmp_path, "apply", "-f", "app.yml")
    assert "No changes" in again.stdout
    exported = cli(asgi_live_server, token, tmp_path, "export", "-o", "out.yml")
    assert exported.returncode == 0
    assert cli(asgi_live_server, token, tmp_path, "apply", "-f", "out.yml").stdout.startswith(
        "No changes"
    )
    (tmp_path / "small.yml").write_text("version: 1\nreview_sessions: []\n")
    asked = cli(asgi_live_server, token, tmp_path, "apply", "-f", "small.yml", "--prune",
                stdin=subprocess.DEVNULL)  # fmt: skip
    assert asked.returncode == 2 and "pass --yes" in asked.stderr
    assert ReviewSession.objects.exists()
    pruned = cli(asgi_live_server, token, tmp_path, "apply", "-f", "small.yml", "--prune", "--yes")
    assert pruned.returncode == 0 and "- review_sessions Weekly review (delete)" in pruned.stdout
    assert not ReviewSession.objects.exists()
