"""The three roles, as Django groups, and what each may do.

- stakeholder: may chat with the deployments open to them;
- reviewer: may chat and rate;
- admin: manages deployments (and sees all of them); superusers count as admins.
"""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

STAKEHOLDER = "stakeholder"
REVIEWER = "reviewer"
ADMIN = "admin"
ROLES = (STAKEHOLDER, REVIEWER, ADMIN)

User = AbstractBaseUser | AnonymousUser


def _group_names(user: User) -> set[str]:
    if not user.is_authenticated:
        return set()
    cached = getattr(user, "_role_names", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))  # type: ignore[union-attr]
        user._role_names = cached  # type: ignore[union-attr]
    return cached


def is_admin(user: User) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or ADMIN in _group_names(user)))


def can_review(user: User) -> bool:
    return is_admin(user) or REVIEWER in _group_names(user)


def can_chat(user: User) -> bool:
    return can_review(user) or STAKEHOLDER in _group_names(user)


def role_label(user: User) -> str:
    if is_admin(user):
        return ADMIN
    if can_review(user):
        return REVIEWER
    if can_chat(user):
        return STAKEHOLDER
    return "no role"
