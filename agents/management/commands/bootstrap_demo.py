import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from agents import services
from agents.models import Deployment
from reviewapp.setup import ensure_roles

DEMO_MODEL_NAME = "main.demo.rag_agent"
DEMO_MODEL_VERSION = "1"
DEMO_ENDPOINT_NAME = "agents_main-demo-rag_agent"
DEMO_INSTRUCTIONS = """\
**Welcome!** This is the bundled demo agent: it answers from a small corpus about MLflow tracing,
Databricks model serving and agent evaluation.

- Ask it something, then open the **Trace** under the answer to see what it retrieved.
- Try `custom_inputs` such as `{"top_k": 5, "style": "bullets"}` (gear button).
"""
DEMO_CUSTOM_INPUTS_SCHEMA = {
    "type": "object",
    "properties": {
        "top_k": {"type": "integer", "minimum": 1, "maximum": 10},
        "style": {"enum": ["concise", "detailed", "bullets"]},
    },
}


# The demo agent picks the schema from the endpoint name (demo_agent/README.md); these show each
# schema, streaming, `auto` detection from the endpoint's task, and an OpenAI-compatible endpoint.
# The first is the one `make run` prints.
DEMO_VARIANTS = [
    {
        "model_name": DEMO_MODEL_NAME,
        "display_name": "Demo RAG agent",
        "endpoint_name": DEMO_ENDPOINT_NAME,
        "agent_schema": "chat_completions",
    },
    {
        "model_name": "main.demo.chat_agent",
        "display_name": "Demo ChatAgent (streaming, schema detected)",
        "endpoint_name": "agents_main-demo-chat_agent",
        "agent_schema": "auto",
        "streaming": True,
    },
    {
        "model_name": "main.demo.responses_agent",
        "display_name": "Demo ResponsesAgent (streaming, schema detected)",
        "endpoint_name": "agents_main-demo-responses_agent",
        "agent_schema": "auto",
        "streaming": True,
    },
    {
        "model_name": "main.demo.legacy_agent",
        "display_name": "Demo legacy {query, history} agent",
        "endpoint_name": "agents_main-demo-legacy_agent",
        "agent_schema": "legacy_split",
    },
    {
        "model_name": "main.demo.openai_compatible",
        "display_name": "Demo OpenAI-compatible endpoint (streaming, no trace)",
        "endpoint_name": "openai-compatible",
        "endpoint_kind": "openai_compatible",
        "agent_schema": "chat_completions",
        "openai_model": "demo",
        "streaming": True,
    },
]


class Command(BaseCommand):
    help = (
        "Idempotent set-up for `make run`: the role groups, an admin login and deployments "
        "pointing at the demo agent (one per agent schema). Running it again changes nothing "
        "that is already right."
    )

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        ensure_roles()
        username, password_note = self._ensure_admin()
        deployment, *_ = [self._ensure_demo_deployment(variant) for variant in DEMO_VARIANTS]
        self.stdout.write(f"Admin login: {username} / {password_note}")
        self.stdout.write(
            f"Demo deployment: {deployment.model_at_version} -> {deployment.query_endpoint}"
        )

    def _ensure_admin(self) -> tuple[str, str]:
        """Create the admin once; its password comes from ADMIN_PASSWORD or var/admin-password."""
        User = get_user_model()
        username = os.environ.get("ADMIN_USERNAME", "admin")
        from_env = os.environ.get("ADMIN_PASSWORD", "")
        password_file = Path(settings.VAR_DIR) / "admin-password"
        saved = password_file.read_text().strip() if password_file.exists() else ""
        user = User.objects.filter(username=username).first()
        if user is None:
            password = from_env or saved or secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            if not from_env:
                password_file.parent.mkdir(parents=True, exist_ok=True)
                password_file.write_text(password + "\n")
                password_file.chmod(0o600)
            return username, password
        if from_env and not user.check_password(from_env):
            user.set_password(from_env)
            user.save(update_fields=["password"])
        for known in (from_env, saved):
            if known and user.check_password(known):
                return username, known
        return username, "(password unchanged: the one you set)"

    def _ensure_demo_deployment(self, variant: dict) -> Deployment:
        fields = dict(variant)
        model_name = fields.pop("model_name")
        endpoint = fields["endpoint_name"]
        fields["query_endpoint"] = (
            f"{settings.DEMO_AGENT_URL}/serving-endpoints/{endpoint}/invocations"
        )
        # The sink follows the endpoint kind (Databricks → the demo agent's feedback endpoint,
        # OpenAI-compatible → kept here), at a URL derived on use, so it follows a moved port.
        fields.setdefault("feedback_sink", "auto")
        fields.setdefault("feedback_endpoint", "")
        fields.setdefault("default_custom_inputs", {"top_k": 3, "style": "concise"})
        fields.setdefault("custom_inputs_schema", DEMO_CUSTOM_INPUTS_SCHEMA)
        fields.setdefault("reviewer_instructions", DEMO_INSTRUCTIONS)
        existing = Deployment.objects.filter(
            model_name=model_name, model_version=DEMO_MODEL_VERSION
        ).first()
        if existing is None:
            return services.deployment_create(
                model_name=model_name, model_version=DEMO_MODEL_VERSION, **fields
            )
        # Keep an admin's edits; only follow the demo agent if it moved to another port.
        if existing.query_endpoint != fields["query_endpoint"]:
            return services.deployment_update(
                deployment=existing, query_endpoint=fields["query_endpoint"], feedback_endpoint=""
            )
        return existing
