"""Program memberships and the roles they carry (author, reviewer, releaser, auditor on one program).

Who may change them:
- administrators grant, change and revoke any membership and its roles (`grant_membership`,
  `change_program_roles`, `revoke_membership`, and `set_program_roles`, which the OIDC login calls with
  source="oidc" to apply the provider's group claims);
- a program's owner may add a member with that user's default roles (`add_member`: the global author, reviewer
  and releaser groups an administrator gave them, never more) and remove members (`remove_member`), but never
  choose roles: granting a right stays with administrators (SOX ITGC access management);
- `actor=None` is the system (migrations, management commands run by an operator, the demo set-up).

Each change is one audited event with the roles before and after (program.member_added,
program.member_roles_changed, program.member_removed) and a ProgramMembership history row, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction

from governance.actions._common import create, save, user_ref
from governance.audit import record_event
from governance.errors import IllegalTransition, InvalidInput, PermissionDenied
from governance.models import PROGRAM_ROLES, MembershipSource, Program, ProgramMembership, Role
from governance.permissions import forget_memberships, has_role, require_role

# --- reading -----------------------------------------------------------------------------------------------


def default_roles(user: Any) -> list[str]:
    """The roles a new membership gets when none are named: the program-scoped global groups the user is in
    (an administrator granted those; on their own they are no right on any program)."""
    return sorted(set(user.groups.filter(name__in=PROGRAM_ROLES).values_list("name", flat=True)))


def membership_state(membership: ProgramMembership) -> dict[str, Any]:
    """A membership as audit JSON."""
    return {"member": user_ref(membership.user), "roles": list(membership.roles), "source": membership.source}


def may_manage_roles(program: Program, user: Any) -> bool:
    """Whether `user` may choose members' roles on `program` (administrators only)."""
    return has_role(user, Role.ADMIN)


def may_manage_members(program: Program, user: Any) -> bool:
    """Whether `user` may add members with their default roles and remove members (the owner, administrators)."""
    return getattr(user, "pk", None) is not None and (program.owner_id == user.pk or has_role(user, Role.ADMIN))


# --- actions -----------------------------------------------------------------------------------------------


@transaction.atomic
def set_program_roles(program: Program, user: Any, roles: Iterable[str], *, actor: Any, reason: str = "",
                      source: str = "manual") -> ProgramMembership:
    """Make `roles` exactly the roles `user` holds on `program`: a membership is granted when there is none and
    changed when its roles (or source) differ; when nothing differs nothing is written. An empty `roles` keeps
    (or gives) read access without roles; `revoke_membership` ends a membership.

    `source` says who decided: "manual" (a person) or "oidc" (the identity provider's group claims).
    """
    _require_role_manager(actor, program)
    roles, source = _known_roles(roles), _known_source(source)
    membership = _locked(program, user)
    if membership is None:
        return _grant(program, user, roles, actor=actor, reason=reason, source=source)
    if membership.roles == roles and membership.source == source:
        return membership
    return _change(membership, roles, actor=actor, reason=reason, source=source)


@transaction.atomic
def grant_membership(program: Program, user: Any, *, actor: Any, roles: Iterable[str] | None = None,
                     reason: str = "") -> ProgramMembership:
    """Make `user` a member of `program` with `roles` (None: their default roles). Administrators only."""
    _require_role_manager(actor, program)
    roles = default_roles(user) if roles is None else _known_roles(roles)
    _refuse_member(program, user)
    return _grant(program, user, roles, actor=actor, reason=reason, source=MembershipSource.MANUAL)


@transaction.atomic
def change_program_roles(program: Program, user: Any, roles: Iterable[str], *, actor: Any,
                         reason: str = "") -> ProgramMembership:
    """Replace a member's roles on `program`. Administrators only; 409 when nothing would change."""
    _require_role_manager(actor, program)
    roles = _known_roles(roles)
    membership = _require_membership(program, user)
    if membership.roles == roles:
        raise IllegalTransition(f"user {user.get_username()!r} already holds exactly "
                                f"{_role_list(roles)} on program {program.slug}")
    return _change(membership, roles, actor=actor, reason=reason, source=MembershipSource.MANUAL)


@transaction.atomic
def revoke_membership(program: Program, user: Any, *, actor: Any, reason: str = "") -> None:
    """End `user`'s membership of `program` and every role it carried. Administrators only."""
    _require_role_manager(actor, program)
    _remove(program, user, actor=actor, reason=reason)


@transaction.atomic
def add_member(program: Program, *, actor: Any, user: Any, reason: str = "") -> ProgramMembership:
    """Give `user` access to the program with their default roles (owner or admin)."""
    _require_owner(program, actor, "add members")
    _refuse_member(program, user)
    return _grant(program, user, default_roles(user), actor=actor, reason=reason, source=MembershipSource.MANUAL)


@transaction.atomic
def remove_member(program: Program, *, actor: Any, user: Any, reason: str = "") -> None:
    """Take away `user`'s access and roles (owner or admin). The owner stays a member while they own it."""
    _require_owner(program, actor, "remove members")
    _remove(program, user, actor=actor, reason=reason)


def add_initial_members(program: Program, members: Iterable[Any], *, actor: Any) -> None:
    """The memberships of a program being created (its creator first), each with the member's default roles;
    create_program's own event records them. Call inside create_program's transaction only."""
    for user in dict.fromkeys([program.owner, *members]):  # once each, the owner first
        create(ProgramMembership, by=actor, program=program, user=user, roles=default_roles(user),
               granted_by=actor if getattr(actor, "pk", None) else None)
        forget_memberships(user)


# --- steps -------------------------------------------------------------------------------------------------


def _grant(program: Program, user: Any, roles: list[str], *, actor: Any, reason: str,
           source: str) -> ProgramMembership:
    try:
        with transaction.atomic():  # a savepoint: a concurrent grant of the same membership is a 409, not a 500
            membership = create(ProgramMembership, by=actor, program=program, user=user, roles=roles,
                                source=source, granted_by=actor if getattr(actor, "pk", None) else None)
    except IntegrityError:
        raise IllegalTransition(f"user {user.get_username()!r} is already a member of {program.slug}") from None
    record_event("program.member_added", actor=actor, obj=membership, program=program,
                 after=membership_state(membership), reason=reason)
    forget_memberships(user)
    return membership


def _change(membership: ProgramMembership, roles: list[str], *, actor: Any, reason: str,
            source: str) -> ProgramMembership:
    before = membership_state(membership)
    membership.roles, membership.source = roles, source
    membership.granted_by = actor if getattr(actor, "pk", None) else None
    save(membership, actor=actor, fields=["roles", "source", "granted_by", "updated_at"])
    record_event("program.member_roles_changed", actor=actor, obj=membership, program=membership.program,
                 before=before, after=membership_state(membership), reason=reason)
    forget_memberships(membership.user)
    return membership


def _remove(program: Program, user: Any, *, actor: Any, reason: str) -> None:
    if user.pk == program.owner_id:
        raise IllegalTransition(f"user {user.get_username()!r} owns {program.slug} and cannot be removed")
    membership = _require_membership(program, user)
    before = membership_state(membership)
    membership._history_user = actor if getattr(actor, "pk", None) else None  # read by simple_history
    membership_id = membership.pk
    membership.delete()
    record_event("program.member_removed", actor=actor, program=program, object_type="ProgramMembership",
                 object_id=membership_id, before=before, reason=reason)
    forget_memberships(user)


# --- checks and helpers ------------------------------------------------------------------------------------


def _require_role_manager(actor: Any, program: Program) -> None:
    if actor is not None:
        require_role(actor, Role.ADMIN, doing=f"manage roles on program {program.slug}")


def _require_owner(program: Program, actor: Any, doing: str) -> None:
    if not may_manage_members(program, actor):
        raise PermissionDenied(f"only the owner of {program.slug} or an administrator may {doing}")


def _locked(program: Program, user: Any) -> ProgramMembership | None:
    """The membership re-read under a row lock (two administrators' changes serialize on it), or None."""
    return (ProgramMembership.objects.select_for_update(no_key=True).select_related("user", "program")
            .filter(program=program, user=user).first())


def _require_membership(program: Program, user: Any) -> ProgramMembership:
    membership = _locked(program, user)
    if membership is None:
        raise IllegalTransition(f"user {user.get_username()!r} is not a member of {program.slug}")
    return membership


def _refuse_member(program: Program, user: Any) -> None:
    if _locked(program, user) is not None:
        raise IllegalTransition(f"user {user.get_username()!r} is already a member of {program.slug}")


def _known_roles(roles: Iterable[str]) -> list[str]:
    if isinstance(roles, str):
        raise InvalidInput("roles must be a list of role names", field="roles")
    roles = sorted({str(r) for r in roles})
    unknown = [r for r in roles if r not in PROGRAM_ROLES]
    if unknown:
        raise InvalidInput(f"unknown program role(s) {', '.join(unknown)}; expected some of "
                           f"{', '.join(PROGRAM_ROLES)} (admin is a global role only)", field="roles")
    return roles


def _known_source(source: str) -> str:
    if source not in (MembershipSource.MANUAL, MembershipSource.OIDC):
        raise InvalidInput(f"source must be manual or oidc, got {source!r}", field="source")
    return str(source)


def _role_list(roles: list[str]) -> str:
    return "the roles " + ", ".join(roles) if roles else "no role"

