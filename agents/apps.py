from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents and deployments"

    def ready(self) -> None:
        from agents import access

        access.connect_receivers()
