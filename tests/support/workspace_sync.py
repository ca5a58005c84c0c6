"""What the `sync_deployments` tests share: the fake workspace's endpoint names and the model
versions a sync imports from it, running the command, and reading the rows it wrote."""

from io import StringIO

from django.core.management import call_command

from agents.models import Deployment

RAG = "agents_main-agents-rag_bot"
TRIAGE = "agents_main-support-triage"
LEGACY = "agents_main-legacy-chat_bot"
IMPORTED = {
    ("main.agents.rag_bot", "2"),
    ("main.agents.rag_bot", "3"),
    ("main.support.triage", "1"),
    ("main.legacy.chat_bot", "5"),
}


def sync(*args: str) -> str:
    out = StringIO()
    call_command("sync_deployments", *args, stdout=out)
    return out.getvalue()


def rows() -> set[tuple[str, str]]:
    return set(Deployment.objects.values_list("model_name", "model_version"))


def row(model_name: str, version: str) -> Deployment:
    return Deployment.objects.get(model_name=model_name, model_version=version)
