"""How the app names a person to the outside: to agents (`user_id`) and to feedback sinks
(`source.id`)."""

from django.contrib.auth.models import AbstractBaseUser


def public_id(user: AbstractBaseUser) -> str:
    """Their email, or their username when they have none; at most 254 characters (an email's
    longest)."""
    return (getattr(user, "email", "") or user.get_username())[:254]
