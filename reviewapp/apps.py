from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReviewAppConfig(AppConfig):
    name = "reviewapp"
    verbose_name = "Review App"

    def ready(self) -> None:
        from reviewapp.setup import ensure_roles

        # After every migrate, so a fresh database (tests included) always has the roles.
        post_migrate.connect(ensure_roles, dispatch_uid="reviewapp.ensure_roles")
