"""Roles are groups; `set_role` gives exactly one, and admins get into the Django admin."""

import pytest
from django.core.management import CommandError, call_command

from reviewapp import roles

pytestmark = pytest.mark.django_db


def test_migrate_creates_the_three_role_groups(django_user_model):
    from django.contrib.auth.models import Group

    assert set(Group.objects.values_list("name", flat=True)) >= set(roles.ROLES)
    admin_perms = Group.objects.get(name="admin").permissions.values_list("codename", flat=True)
    assert "change_deployment" in admin_perms


def test_set_role_creates_a_user_and_prints_a_password_once(django_user_model, capsys):
    call_command("set_role", "bob", "stakeholder", "--create")
    output = capsys.readouterr().out
    password = output.split("password: ")[1].split()[0]
    bob = django_user_model.objects.get(username="bob")
    assert bob.check_password(password)
    assert roles.can_chat(bob) and not roles.can_review(bob) and not bob.is_staff


def test_set_role_replaces_the_role_and_admins_become_staff(django_user_model):
    django_user_model.objects.create_user("carol")
    call_command("set_role", "carol", "reviewer")
    carol = django_user_model.objects.get(username="carol")
    assert roles.role_label(carol) == "reviewer"
    call_command("set_role", "carol", "admin")
    carol = django_user_model.objects.get(username="carol")
    assert list(carol.groups.values_list("name", flat=True)) == ["admin"]
    assert carol.is_staff and roles.is_admin(carol)


def test_set_role_refuses_an_unknown_user_without_create():
    with pytest.raises(CommandError, match="add --create"):
        call_command("set_role", "ghost", "reviewer")


def test_set_role_reads_a_password_from_the_environment(django_user_model, monkeypatch):
    monkeypatch.setenv("NEW_PW", "a-chosen-password")
    call_command("set_role", "dave", "reviewer", "--create", "--password-env", "NEW_PW")
    assert django_user_model.objects.get(username="dave").check_password("a-chosen-password")


def test_the_admin_group_can_use_the_django_admin(client, admin_user, deployment_factory):
    from reviewapp.setup import user_set_role

    deployment = deployment_factory()
    user_set_role(user=admin_user, role="admin")
    client.force_login(admin_user)
    assert client.get("/admin/agents/deployment/").status_code == 200
    page = client.get(f"/admin/agents/deployment/{deployment.pk}/change/")
    assert page.status_code == 200
    assert "tokens are never stored" in page.content.decode()
