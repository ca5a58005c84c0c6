"""What the review commands share: naming the session, the admin who acts and a deployment."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from agents.models import Deployment
from review.models import ReviewSession


def add_common_arguments(parser: CommandParser, *, deployment_required: bool) -> None:
    parser.add_argument("--session", type=int, required=True, help="The review session's id.")
    parser.add_argument(
        "--user",
        required=True,
        help="Username of the admin on whose behalf this runs (only admins change sessions).",
    )
    parser.add_argument(
        "--deployment",
        type=int,
        required=deployment_required,
        help="Id of the session's deployment whose MLflow tracking server (and credentials) "
        "to use" + ("." if deployment_required else "; needed only when there are several."),
    )
    parser.add_argument("--experiment-id", required=True, help="The MLflow experiment's id.")


def load(options: dict) -> tuple[ReviewSession, AbstractBaseUser, Deployment | None]:
    session = ReviewSession.objects.filter(pk=options["session"]).first()
    if session is None:
        raise CommandError(f"No review session {options['session']}.")
    users = get_user_model().objects
    user = users.filter(**{users.model.USERNAME_FIELD: options["user"]}).first()
    if user is None:
        raise CommandError(f"No user {options['user']!r}.")
    deployment = None
    if options["deployment"] is not None:
        deployment = Deployment.objects.filter(pk=options["deployment"]).first()
        if deployment is None:
            raise CommandError(f"No deployment {options['deployment']}.")
    return session, user, deployment


def error_text(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return " ".join(f"{field}: {' '.join(m)}" for field, m in exc.message_dict.items())
    return " ".join(exc.messages)
