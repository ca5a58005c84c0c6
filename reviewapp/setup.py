"""Idempotent set-up: the role groups, and users given a role."""

from django.contrib.auth.models import AbstractUser, Group, Permission

from reviewapp import roles

# Admins manage everything of these apps in the Django admin.
_ADMIN_APPS = ("agents", "feedback", "authtoken")


def ensure_roles(**kwargs: object) -> None:
    for name in roles.ROLES:
        Group.objects.get_or_create(name=name)
    admin_group = Group.objects.get(name=roles.ADMIN)
    admin_group.permissions.add(*Permission.objects.filter(content_type__app_label__in=_ADMIN_APPS))


def user_set_role(*, user: AbstractUser, role: str) -> AbstractUser:
    """Give the user exactly one role; admins also get into the Django admin (is_staff)."""
    if role not in roles.ROLES:
        raise ValueError(f"Unknown role {role!r}: use one of {', '.join(roles.ROLES)}.")
    ensure_roles()
    user.groups.remove(*Group.objects.filter(name__in=roles.ROLES))
    user.groups.add(Group.objects.get(name=role))
    user.is_staff = role == roles.ADMIN or user.is_superuser
    user.save(update_fields=["is_staff"])
    return user
