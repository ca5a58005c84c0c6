from django.apps import AppConfig


class InferenceTablesConfig(AppConfig):
    name = "inference_tables"
    verbose_name = "Inference-table exports and imports"
