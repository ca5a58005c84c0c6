"""API authentication. In a module of its own: DRF loads its authentication classes while
`rest_framework.views` is being imported, so this module must not import DRF's views."""

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, answered from the per-process access cache (agents.access):
    a known token costs the access stamp's read instead of the token, user and roles queries.
    A token deleted, a user deactivated or moved between groups takes effect on the next call
    in every process, as for chat turns."""

    def authenticate_credentials(self, key: str):
        from agents import access  # imported once the apps are loaded (it imports models)

        access.follow_changes()
        user = access.user_for_token(key)
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return (user, key)
