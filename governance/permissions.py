"""Who may do what: roles are granted per program through memberships; admin and auditor are also global.

A membership (governance.models.ProgramMembership) makes its user a member of one program and carries their
roles there (author, reviewer, releaser, auditor). Global roles are Django groups: an administrator passes every
role check on every program, a global auditor reads every program and holds the auditor role on each. The
global author, reviewer and releaser groups grant nothing on a program by themselves: they are the roles a new
membership gets when none are named (governance.actions.memberships.default_roles), and the author group lets
its holder create programs. The owner of a program may always see it.

Actions ask these functions; views ask `allowed_actions` to decide which buttons to show. Superusers and the
admin role pass role checks but never segregation-of-duties checks (those live in the actions).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib.auth.models import AnonymousUser, Group
from django.db.models import Q, QuerySet

from governance.errors import PermissionDenied
from governance.models import Program, ProgramMembership, Role

ROLE_NAMES = [role.value for role in Role]
# user id -> {program id: roles on it} (every membership of the user, read at once), while
# `remembered_memberships` is active; None otherwise.
_memberships: ContextVar[dict[Any, dict[Any, frozenset[str]]] | None] = ContextVar(
    "governance_memberships", default=None)


# user id -> the ids of every group the user is in, while `remembered_memberships` is active; None otherwise.
_group_ids: ContextVar[dict[Any, frozenset[int]] | None] = ContextVar("governance_group_ids", default=None)


@contextmanager
def remembered_memberships() -> Iterator[None]:
    """Within the block, each user's memberships (and groups) are read from the database once (one query for all
    of them): a page asking every check of an object at once (governance.actions.rights), or of each row of a list,
    would otherwise ask the same question many times. The membership actions forget what they change
    (`forget_memberships`), so a block never answers from a stale membership."""
    tokens = (_memberships.set({}), _group_ids.set({})) if _memberships.get() is None else None
    try:
        yield
    finally:
        if tokens is not None:
            _memberships.reset(tokens[0])
            _group_ids.reset(tokens[1])


def forget_memberships(user: Any) -> None:
    """Drop `user`'s remembered memberships and groups, if a block remembers them (an action just changed one)."""
    for memo in (_memberships.get(), _group_ids.get()):
        if memo is not None:
            memo.pop(getattr(user, "pk", None), None)


def in_group(user: Any, group_id: int) -> bool:
    """Whether `user` is in the group (a review policy's reviewer group): within a remembered block the user's
    groups are read once, so a list of change requests under one policy asks once, not once per row."""
    memo = _group_ids.get()
    if memo is None:
        return user.groups.filter(pk=group_id).exists()
    if user.pk not in memo:
        memo[user.pk] = frozenset(user.groups.values_list("pk", flat=True))
    return group_id in memo[user.pk]


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


def _authenticated(user: Any) -> bool:
    return user is not None and not isinstance(user, AnonymousUser) and bool(getattr(user, "is_authenticated", False))


def program_roles(user: Any, program: Program) -> frozenset[str] | None:
    """The roles `user`'s membership carries on `program` (empty: a member without roles); None: no membership."""
    if not _authenticated(user):
        return None
    if _memberships.get() is None:
        roles = ProgramMembership.objects.filter(program_id=program.pk, user_id=user.pk).order_by().values_list(
            "roles", flat=True).first()
        return None if roles is None else frozenset(roles)
    return _all_memberships(user).get(program.pk)


def _all_memberships(user: Any) -> dict[Any, frozenset[str]]:
    """program id -> roles, for every membership of `user` (read once per remembered block)."""
    memo = _memberships.get()
    if memo is not None and user.pk in memo:
        return memo[user.pk]
    held = {program_id: frozenset(roles) for program_id, roles in
            ProgramMembership.objects.filter(user_id=user.pk).order_by().values_list("program_id", "roles")}
    if memo is not None:
        memo[user.pk] = held
    return held


def has_role(user: Any, role: Role | str, program: Program | None = None) -> bool:
    """Given a program: the role on that program (its membership; admins hold every role everywhere, global
    auditors the auditor role everywhere). Without one: the global role (the author, reviewer and releaser
    groups are only defaults for new memberships, so ask with a program for anything done on one)."""
    roles, role = user_roles(user), str(role)
    if Role.ADMIN.value in roles:
        return True
    if program is None or (role == Role.AUDITOR.value and role in roles):
        return role in roles
    held = program_roles(user, program)
    return held is not None and role in held


def users_with_role(users: Iterable[Any], role: Role | str, program: Program) -> list[Any]:
    """The users who hold `role` on `program`, as `has_role` answers for each, in two queries for all of them
    (their role groups, their memberships of this program) instead of two or three per user (notifications ask
    this of every member of a program on each last approval)."""
    users = list(users)
    ids = [u.pk for u in users]
    groups: dict[Any, set[str]] = {pk: set() for pk in ids}
    for user_id, name in Group.user_set.through.objects.filter(user_id__in=ids, group__name__in=ROLE_NAMES) \
            .values_list("user_id", "group__name"):
        groups[user_id].add(name)
    for user in users:
        if getattr(user, "_governance_roles", None) is None:  # as user_roles would read it
            user._governance_roles = groups[user.pk] | ({Role.ADMIN.value} if user.is_superuser else set())
    held = dict(ProgramMembership.objects.filter(program_id=program.pk, user_id__in=ids).order_by()
                .values_list("user_id", "roles"))
    # A block of our own for this one question: it knows these users' memberships of this program only.
    token = _memberships.set({pk: ({program.pk: frozenset(held[pk])} if pk in held else {}) for pk in ids})
    try:
        return [user for user in users if has_role(user, role, program)]
    finally:
        _memberships.reset(token)


def programs_with_role(user: Any, role: Role | str) -> QuerySet[Program]:
    """The programs on which `user` holds `role` (every program for an administrator)."""
    if not _authenticated(user):
        return Program.objects.none()
    if has_role(user, Role.ADMIN) or (str(role) == Role.AUDITOR.value and has_role(user, Role.AUDITOR)):
        return Program.objects.all()
    return Program.objects.filter(pk__in=[pk for pk, roles in _all_memberships(user).items() if str(role) in roles])


def sees_every_program(user: Any) -> bool:
    """Administrators and global auditors read every program."""
    roles = user_roles(user)
    return Role.ADMIN.value in roles or Role.AUDITOR.value in roles


def is_member(user: Any, program: Program) -> bool:
    """Members (a membership, with or without roles), the owner, admins and global auditors may see a program."""
    if not _authenticated(user):
        return False
    if sees_every_program(user) or program.owner_id == user.pk:
        return True
    return program_roles(user, program) is not None


def visible_programs(user: Any) -> QuerySet[Program]:
    """The programs a user may see (per-object permission for lists and lookups)."""
    if not _authenticated(user):
        return Program.objects.none()
    if sees_every_program(user):
        return Program.objects.all()
    return Program.objects.filter(Q(members=user) | Q(owner=user)).distinct()


def require_member(user: Any, program: Program) -> None:
    if not is_member(user, program):
        raise PermissionDenied(f"{_name(user)} is not a member of program {program.slug}")


def require_role(user: Any, role: Role | str, program: Program | None = None, *, doing: str = "") -> None:
    """Raise PermissionDenied unless `user` has `role` (given a program: on that program, as `has_role` says).
    A user who cannot even see the program hears that first."""
    if has_role(user, role, program):
        return
    if program is not None:
        require_member(user, program)
    what = f" to {doing}" if doing else ""
    where = f" on program {program.slug}" if program is not None else ""
    raise PermissionDenied(f"{_name(user)} needs the {Role(str(role)).label.lower()} role{what}{where}")


def _name(user: Any) -> str:
    if user is None or not getattr(user, "is_authenticated", False):
        return "anonymous user"
    return f"user {user.get_username()!r}"
