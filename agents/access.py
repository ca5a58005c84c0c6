"""Who may chat with which deployment, answered from memory in each web process.

A chat turn needs the caller (by API token), their roles and the deployment they may see: four
queries whose answers almost never change. Each process keeps the answers here. Any change to
users, group memberships, tokens or deployments moves the AccessStamp row in the same
transaction (the receivers below), and every lookup first reads that row by its primary key
and drops what it holds when the value moved: a user removed from a group loses access on
their next turn in every process, and a cached answer costs one indexed read.
"""

import threading

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, models, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.http import Http404
from rest_framework.authtoken.models import Token

from agents import selectors
from agents.models import AccessStamp, Deployment, RequestLog
from reviewapp import roles

MAX_ENTRIES = 10_000  # per map; past it the map starts again (a cold turn costs ~4 queries)
_NOT_VISIBLE = object()

_lock = threading.Lock()
_stamp: int | None = None
_users_by_token: dict[str, AbstractBaseUser | None] = {}
_role_names: dict[int, set[str]] = {}
_deployments: dict[tuple[int, int], object] = {}


def user_for_token(key: str) -> AbstractBaseUser | None:
    """The active user an API token belongs to, with their roles loaded; None if no such.
    Call `follow_changes()` first, once per database step."""
    user = known_user(key)
    if user is not NOT_KNOWN:
        return user
    token = Token.objects.select_related("user").filter(key=key).first()
    user = token.user if token is not None and token.user.is_active else None
    if user is not None:
        _load_roles(user)
    _remember(_users_by_token, key, user)
    return user


def chat_deployment(user: AbstractBaseUser, deployment_id: int) -> Deployment:
    """The deployment this user may chat with, enabled or not (the turn says "disabled"):
    PermissionDenied without a role that may chat, Http404 when it does not exist or is not
    open to them (the same answer, on purpose). Call `follow_changes()` first, once per
    database step."""
    _load_roles(user)
    found = known_chat_deployment(user, deployment_id)  # the role's refusal, or a known answer
    if found is NOT_KNOWN:
        try:
            found = selectors.deployment_get_for_user(user, deployment_id, include_disabled=True)
        except Http404:
            _remember(_deployments, (user.pk, deployment_id), _NOT_VISIBLE)
            raise Http404("No such deployment.") from None
        _remember(_deployments, (user.pk, deployment_id), found)
    return found  # type: ignore[return-value]


def follows(stamp: int) -> bool:
    """Whether this process's answers are those of this stamp (read by the caller's own
    driver, agents/turns/pg_async.py); if not, a `follow_changes()` step refreshes them."""
    return _stamp is not None and stamp == _stamp


NOT_KNOWN = object()  # not in this process's memory: ask through the ORM


def known_user(key: str) -> AbstractBaseUser | object | None:
    """`user_for_token` from memory only: the user, None (no such), or NOT_KNOWN."""
    user = _users_by_token.get(key, NOT_KNOWN)
    if user is None or user is NOT_KNOWN:
        return user
    return user if getattr(user, "_role_names", None) is not None else NOT_KNOWN


def known_chat_deployment(user: AbstractBaseUser, deployment_id: int) -> Deployment | object:
    """`chat_deployment` from memory only (same refusals), or NOT_KNOWN."""
    if getattr(user, "_role_names", None) is None:
        return NOT_KNOWN
    if not roles.can_chat(user):
        raise PermissionDenied("Your account has no role that may chat.")
    found = _deployments.get((user.pk, deployment_id), NOT_KNOWN)
    if found is _NOT_VISIBLE:
        raise Http404("No such deployment.")
    return found


def reviewable_turn(user: AbstractBaseUser, request_id: str) -> RequestLog:
    """The turn (without its trace and raw bodies) for someone who may review: Http404 unless
    its deployment is one they see (as agents.selectors.requests_visible_to says, a reviewer
    sees every turn of those). The visibility comes from this cache instead of the subqueries
    that selector builds on every call (the rating POST's largest cost, bench/README.md)."""
    follow_changes()
    turn = selectors.request_by_id(request_id)
    if turn is None:
        raise Http404("No such request.")
    try:
        deployment = chat_deployment(user, turn.deployment_id)
    except (PermissionDenied, Http404):
        raise Http404("No such request.") from None
    if not (deployment.enabled or roles.is_admin(user)):
        raise Http404("No such request.")
    return turn


def _load_roles(user: AbstractBaseUser) -> None:
    # roles.* read `_role_names` when it is there instead of querying the groups each time.
    if not user.is_authenticated or getattr(user, "_role_names", None) is not None:
        return
    names = _role_names.get(user.pk)
    if names is None:
        names = set(user.groups.values_list("name", flat=True))
        _remember(_role_names, user.pk, names)
    user._role_names = names


def _remember(cache: dict, key, value) -> None:
    with _lock:
        if len(cache) >= MAX_ENTRIES:
            cache.clear()
        cache[key] = value


def follow_changes() -> None:
    """Read the stamp (one primary-key read) and drop this process's answers if it moved."""
    global _stamp
    stamp = _read_stamp()
    if stamp != _stamp:
        with _lock:
            _forget()
            _stamp = stamp


# A raw primary-key read: this runs on every turn and rating, and the ORM would cost more than
# the query. Also sent by the statements awaited on the event loop (reviewapp/pg_loop.py).
STAMP_SQL = f"SELECT value FROM {AccessStamp._meta.db_table} WHERE id = 1"  # noqa: S608


def _read_stamp() -> int:
    with connection.cursor() as cursor:
        cursor.execute(STAMP_SQL)
        row = cursor.fetchone()
    return row[0] if row else 0


def forget() -> None:
    """Drop every answer this process holds (tests: start as a new process would)."""
    with _lock:
        _forget()


def _forget() -> None:
    _users_by_token.clear()
    _role_names.clear()
    _deployments.clear()


def access_changed(**_) -> None:
    """Move the stamp (with the change's transaction) and forget this process's answers now."""
    moved = AccessStamp.objects.filter(pk=1).update(value=models.F("value") + 1)
    if not moved:
        try:
            with transaction.atomic():
                AccessStamp.objects.create(pk=1, value=1)
        except IntegrityError:  # created meanwhile by another process
            AccessStamp.objects.filter(pk=1).update(value=models.F("value") + 1)
    with _lock:
        _forget()


def _user_saved(sender, instance, update_fields=None, **kwargs) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # every sign-in saves last_login; it changes no access
    access_changed()


def connect_receivers() -> None:
    """Called from AgentsConfig.ready()."""
    user_model = get_user_model()
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="access-user-saved")
    watched = {
        "user": user_model,
        "group": Group,
        "token": Token,
        "deployment": Deployment,
    }
    for name, model in watched.items():
        if name != "user":
            post_save.connect(access_changed, sender=model, dispatch_uid=f"access-{name}-saved")
        post_delete.connect(access_changed, sender=model, dispatch_uid=f"access-{name}-deleted")
    memberships = {
        "user-groups": user_model.groups.through,
        "deployment-users": Deployment.allowed_users.through,
        "deployment-groups": Deployment.allowed_groups.through,
    }
    for name, through in memberships.items():
        m2m_changed.connect(_membership_changed, sender=through, dispatch_uid=f"access-{name}")


def _membership_changed(sender, action: str, **kwargs) -> None:
    if action.startswith("post_"):
        access_changed()
