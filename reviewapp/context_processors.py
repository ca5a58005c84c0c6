from django.http import HttpRequest

from reviewapp import roles as role_rules


def roles(request: HttpRequest) -> dict:
    """What the signed-in user may do, for templates that show or hide actions."""
    user = request.user
    return {
        "user_is_admin": role_rules.is_admin(user),
        "user_can_review": role_rules.can_review(user),
        "user_can_chat": role_rules.can_chat(user),
        "user_role": role_rules.role_label(user),
    }
