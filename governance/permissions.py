"""Who may do what: roles are Django groups, rights are per program (membership).

Actions ask these functions; views ask `allowed_actions` to decide which buttons to show. Superusers and the
admin role pass role checks but never segregation-of-duties checks (those live in the actions).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib.auth.models import AnonymousUser, Group
from django.db.models import Q, QuerySet

from governance.errors import PermissionDenied
from governance.models import Program, Role

ROLE_NAMES = [role.value for role in Role]
# (user id, program id) -> member?, while `remembered_memberships` is active; None otherwise.
_memberships: ContextVar[dict[tuple[Any, Any], bool] | None] = ContextVar("governance_memberships", default=None)


@contextmanager
def remembered_memberships() -> Iterator[None]:
    """Within the block, each (user, program) membership is read from the database once: a page asking every
    check of an object at once (governance.actions.rights) would otherwise ask the same question many times.
    Nothing inside such a block changes memberships."""
    token = _memberships.set({}) if _memberships.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _memberships.reset(token)


def ensure_role_groups() -> dict[str, Group]:
    """Create the role groups if missing (idempotent; called by migrations' post_migrate and setup commands)."""
    return {name: Group.objects.get_or_create(name=name)[0] for name in ROLE_NAMES}


def user_roles(user: Any) -> set[str]:
    if user is None or isinstance(user, AnonymousUser) or not user.is_authenticated:
        return set()
    cached = getattr(user, "_governance_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLE_NAMES).values_list("name", flat=True))
        if user.is_superuser:
            cached.add(Role.ADMIN.value)
        user._governance_roles = cached
    return cached


def has_role(user: Any, role: Role | str) -> bool:
    roles = user_roles(user)
    return str(role) in roles or Role.ADMIN.value in roles


def is_member(user: Any, program: Program) -> bool:
    """Members, the owner, admins and auditors (who read everything) may see a program."""
    if not user_roles(user) and not getattr(user, "is_authenticated", False):
        return False
    if has_role(user, Role.ADMIN) or Role.AUDITOR.value in user_roles(user):
        return True
    if program.owner_id == user.pk:
        return True
    memo, key = _memberships.get(), (user.pk, program.pk)
    if memo is not None and key in memo:
        return memo[key]
    member = program.members.filter(pk=user.pk).exists()
    if memo is not None:
        memo[key] = member
    return member


def visible_programs(user: Any) -> QuerySet[Program]:
    """The programs a user may see (per-object permission for lists and lookups)."""
    if not getattr(user, "is_authenticated", False):
        return Program.objects.none()
    if has_role(user, Role.ADMIN) or Role.AUDITOR.value in user_roles(user):
        return Program.objects.all()
    return Program.objects.filter(Q(members=user) | Q(owner=user)).distinct()


def require_member(user: Any, program: Program) -> None:
    if not is_member(user, program):
        raise PermissionDenied(f"{_name(user)} is not a member of program {program.slug}")


def require_role(user: Any, role: Role | str, program: Program | None = None, *, doing: str = "") -> None:
    """Raise PermissionDenied unless `user` has `role` (and, given a program, is a member of it)."""
    if not has_role(user, role):
        what = f" to {doing}" if doing else ""
        raise PermissionDenied(f"{_name(user)} needs the {Role(str(role)).label.lower()} role{what}")
    if program is not None:
        require_member(user, program)


def _name(user: Any) -> str:
    if user is None or not getattr(user, "is_authenticated", False):
        return "anonymous user"
    return f"user {user.get_username()!r}"
