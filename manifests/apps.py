from django.apps import AppConfig


class ManifestsConfig(AppConfig):
    name = "manifests"
    verbose_name = "Configuration as code (YAML manifests)"
