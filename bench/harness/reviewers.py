"""The benchmarks' reviewers: users with the reviewer role and a DRF token. Imports Django
models: import it after config.configure()."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from reviewapp import roles
from reviewapp.setup import user_set_role


@dataclass
class Reviewer:
    user: object
    token: str


def reviewers_ensure(count: int, prefix: str) -> list[Reviewer]:
    """`count` users named `{prefix}-NNN` with the reviewer role and a DRF token; those of
    earlier runs are reused."""
    User = get_user_model()
    people = []
    for i in range(count):
        user, created = User.objects.get_or_create(
            username=f"{prefix}-{i:03d}", defaults={"email": f"{prefix}-{i:03d}@example.com"}
        )
        if created or not roles.can_review(user):
            user_set_role(user=user, role=roles.REVIEWER)
        token, _ = Token.objects.get_or_create(user=user)
        people.append(Reviewer(user, token.key))
    return people
