import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from reviewapp import roles
from reviewapp.setup import user_set_role


class Command(BaseCommand):
    help = "Give a user one role: stakeholder (chat), reviewer (chat and rate) or admin."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("role", choices=roles.ROLES)
        parser.add_argument("--create", action="store_true", help="Create the user if missing.")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password-env",
            metavar="VAR",
            help="With --create: read the new user's password from this environment variable "
            "(otherwise a random one is generated and printed once).",
        )

    def handle(
        self,
        *args,
        username: str,
        role: str,
        create: bool,
        email: str,
        password_env: str | None,
        **options,
    ) -> None:
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create:
                raise CommandError(f"No user {username!r}; add --create to create it.")
            password = os.environ.get(password_env, "") if password_env else ""
            if password_env and not password:
                raise CommandError(f"The environment variable {password_env} is empty or unset.")
            generated = not password
            password = password or secrets.token_urlsafe(12)
            user = User.objects.create_user(username=username, email=email, password=password)
            if generated:
                self.stdout.write(f"Created {username} with password: {password}")
        user_set_role(user=user, role=role)
        self.stdout.write(self.style.SUCCESS(f"{username} is now a {role}."))
