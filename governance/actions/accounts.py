"""Principals as governed objects: users and service accounts, their global roles, passwords, portal login
lockout (API keys are governance.actions.tokens).

Each change is one action (permission check, state check, change, audit event, AccountState history row, one
transaction), whether it comes from the portal, the API or a management command; the Django admin only reads.

Part 11 (11.300): a password someone else set (an administrator creating the account or resetting it) is
known to that someone, so the account may not sign until its owner changed it (`check_can_sign`); a reset
also revokes the account's API tokens, and a deactivated account's sessions and tokens stop at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from governance.actions import tokens
from governance.actions._common import require_text, save, user_ref
from governance.actions.credentials import (  # re-exported: the portal login and tests use them from here
    clear_login_failures,
    login_lockout_remaining,
    record_login_failure,
    verify_password,
)
from governance.audit import record_event
from governance.errors import IllegalTransition, InvalidInput, PermissionDenied
from governance.models import AccountState, Role
from governance.permissions import ROLE_NAMES, ensure_role_groups, forget_memberships, has_role, require_role

_SIGN_STATE = "_governance_sign_state"
_MISSING: Any = object()

# --- reading -----------------------------------------------------------------------------------------------


def account_state(user: Any) -> AccountState:
    """The user's AccountState (users created before it existed get a default one, not yet saved); a list that read
    it with its users (select_related("account_state")) is not asked again."""
    loaded = getattr(getattr(user, "_state", None), "fields_cache", {})
    state = loaded["account_state"] if "account_state" in loaded else AccountState.objects.filter(user=user).first()
    return state or AccountState(user=user, active=user.is_active, roles=sorted(_group_roles(user)))


def must_change_password(user: Any) -> bool:
    return AccountState.objects.filter(user_id=user.pk, must_change_password=True).exists()


def _sign_state(user: Any) -> dict[str, bool] | None:
    """The account's password/service state, read once per user instance (pages ask it for every change
    request they list); actions that change it forget it (`_forget_cached`)."""
    cached = getattr(user, _SIGN_STATE, _MISSING)
    if cached is not _MISSING:
        return cached
    loaded = getattr(getattr(user, "_state", None), "fields_cache", {})
    if "account_state" in loaded:  # the session's user came with it (api.authentication.AccountBackend)
        state = loaded["account_state"]
        cached = None if state is None else {"must_change_password": state.must_change_password,
                                             "service_account": state.service_account}
    else:
        cached = AccountState.objects.filter(user_id=user.pk).values("must_change_password", "service_account").first()
    setattr(user, _SIGN_STATE, cached)
    return cached


def check_can_sign(user: Any) -> None:
    """Refuse a signature by an inactive account, or by one whose password an administrator set (Part 11.300:
    only the owner may know the password that signs). Call it before accepting any signature."""
    name = user.get_username() if user is not None and getattr(user, "is_authenticated", False) else None
    if name is None:
        raise PermissionDenied("an anonymous user cannot sign")
    if not user.is_active:
        raise PermissionDenied(f"user {name!r} is deactivated and cannot sign")
    state = _sign_state(user)
    if state and state["service_account"]:
        raise PermissionDenied(f"user {name!r} is a service account and cannot sign")
    if state and state["must_change_password"]:
        raise PermissionDenied(f"user {name!r} must change the password an administrator set before signing")


# --- users -------------------------------------------------------------------------------------------------


@transaction.atomic
def setup_role_groups(*, actor: Any = None) -> dict[str, Group]:
    """Create the role groups that are missing; audited as "roles.created" when any was."""
    missing = sorted(set(ROLE_NAMES) - set(Group.objects.filter(name__in=ROLE_NAMES).values_list("name", flat=True)))
    groups = ensure_role_groups()
    if missing:
        record_event("roles.created", actor=actor, object_type="Group", object_id=",".join(missing),
                     after={"groups": missing})
    return groups


@transaction.atomic
def create_user(*, actor: Any, username: str, password: str, roles: Iterable[str] = (), first_name: str = "",
                last_name: str = "", email: str = "") -> Any:
    """Create a user in the given role groups; audited as "user.created" (never with the password).

    `actor=None` is the system (a management command run by an operator); any other actor needs the admin role,
    and the password they chose must be changed by its owner before the account can sign.
    """
    if actor is not None:
        require_role(actor, Role.ADMIN, doing="create users")
    username = require_text(username, field="username", max_length=150)
    roles = _known_roles(roles, field="roles")
    model = get_user_model()
    if model.objects.filter(username=username).exists():
        raise InvalidInput(f"user {username!r} already exists", field="username")
    if not password:
        raise InvalidInput("a password is required", field="password")
    user = model(username=username, email=email, first_name=first_name, last_name=last_name)
    _validate_password(password, user, field="password")
    user.set_password(password)
    save(user, actor=actor)
    groups = ensure_role_groups()
    user.groups.add(*(groups[r] for r in roles))
    set_by_other = getattr(actor, "pk", None) is not None
    _record_state(user, actor=actor, must_change_password=set_by_other,
                  password_set_by=actor if set_by_other else None, password_set_at=timezone.now())
    record_event("user.created", actor=actor, obj=user, object_type="User", after={
        "username": username, "name": user.get_full_name(), "email": email, "roles": roles})
    return user


@transaction.atomic
def deactivate_user(user: Any, *, actor: Any, reason: str = "") -> Any:
    """Stop the account at once: sessions no longer authenticate (Django checks is_active on every request),
    its API tokens are revoked, and it cannot sign."""
    _require_admin(actor, "deactivate users")
    user = _locked(user)
    if user.pk == actor.pk:
        raise IllegalTransition("you cannot deactivate your own account")
    if not user.is_active:
        raise IllegalTransition(f"user {user.get_username()!r} is already deactivated")
    _require_another_admin(user, doing="deactivate")
    user.is_active = False
    save(user, actor=actor, fields=["is_active"])
    revoked = tokens.revoke_all(user, actor=actor)
    _record_state(user, actor=actor)
    record_event("user.deactivated", actor=actor, obj=user, object_type="User", reason=reason,
                 before={"active": True}, after={"active": False, "tokens_revoked": revoked})
    return user


@transaction.atomic
def reactivate_user(user: Any, *, actor: Any, reason: str = "") -> Any:
    """Let a deactivated account sign in again (its old tokens stay revoked; it creates new ones)."""
    _require_admin(actor, "reactivate users")
    user = _locked(user)
    if user.is_active:
        raise IllegalTransition(f"user {user.get_username()!r} is already active")
    user.is_active = True
    save(user, actor=actor, fields=["is_active"])
    _record_state(user, actor=actor)
    record_event("user.reactivated", actor=actor, obj=user, object_type="User", reason=reason,
                 before={"active": False}, after={"active": True})
    return user


# --- passwords ---------------------------------------------------------------------------------------------


def change_own_password(user: Any, *, old_password: str, new_password: str) -> Any:
    """The owner sets a new password, proving the current one; clears "must change password".

    A wrong current password is recorded as "user.password_change_denied" (committed) and refused.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        raise PermissionDenied("only an active, signed-in user may change their password")
    verify_password(user, old_password, denied="user.password_change_denied", field="old_password",
                    what="current password")
    if new_password == old_password:
        raise InvalidInput("the new password must differ from the current one", field="new_password")
    _validate_password(new_password, user, field="new_password")
    with transaction.atomic():
        user = _locked(user)
        had_flag = must_change_password(user)
        user.set_password(new_password)
        save(user, actor=user, fields=["password"])
        _record_state(user, actor=user, must_change_password=False, password_set_by=None,
                      password_set_at=timezone.now())
        record_event("user.password_changed", actor=user, obj=user, object_type="User",
                     after={"by": "owner", "cleared_must_change": had_flag})
    return user


@transaction.atomic
def reset_password(user: Any, *, actor: Any, password: str, reason: str = "") -> Any:
    """An administrator sets another user's password: the owner must change it before signing, and every API
    token of the account is revoked (whoever held one no longer gets in through it). Never audits the password."""
    _require_admin(actor, "reset passwords")
    if user.pk == actor.pk:
        raise IllegalTransition("change your own password with your current password, not as an administrator")
    user = _locked(user)
    if not password:
        raise InvalidInput("a password is required", field="password")
    _validate_password(password, user, field="password")
    user.set_password(password)
    save(user, actor=actor, fields=["password"])
    revoked = tokens.revoke_all(user, actor=actor)
    _record_state(user, actor=actor, must_change_password=True, password_set_by=actor,
                  password_set_at=timezone.now())
    record_event("user.password_reset", actor=actor, obj=user, object_type="User", reason=reason,
                 after={"by": user_ref(actor), "must_change_password": True, "tokens_revoked": revoked})
    return user


# --- roles -------------------------------------------------------------------------------------------------


@transaction.atomic
def grant_role(user: Any, *, actor: Any, role: str, reason: str = "") -> Any:
    """Add a global role; it takes effect on the user's next request (e.g. who may sign)."""
    _require_admin(actor, "grant roles")
    role = _known_roles([role], field="role")[0]
    user = _locked(user)
    if role in _group_roles(user):
        raise IllegalTransition(f"user {user.get_username()!r} already has the {role} role")
    before = sorted(_group_roles(user))
    user.groups.add(ensure_role_groups()[role])
    return _role_changed(user, actor, "user.role_granted", role, before, reason)


@transaction.atomic
def revoke_role(user: Any, *, actor: Any, role: str, reason: str = "") -> Any:
    """Take a global role away (an administrator may not remove the last administrator)."""
    _require_admin(actor, "revoke roles")
    role = _known_roles([role], field="role")[0]
    user = _locked(user)
    if role not in _group_roles(user):
        raise IllegalTransition(f"user {user.get_username()!r} does not have the {role} role")
    if role == Role.ADMIN.value:
        if user.pk == actor.pk:
            raise IllegalTransition("you cannot remove your own administrator role")
        _require_another_admin(user, doing="remove the administrator role of")
    before = sorted(_group_roles(user))
    user.groups.remove(Group.objects.get(name=role))
    return _role_changed(user, actor, "user.role_revoked", role, before, reason)


def _role_changed(user: Any, actor: Any, action: str, role: str, before: list[str], reason: str) -> Any:
    state = _record_state(user, actor=actor)
    record_event(action, actor=actor, obj=user, object_type="User", reason=reason,
                 before={"roles": before}, after={"role": role, "roles": state.roles})
    return user


# --- service accounts --------------------------------------------------------------------------------------


@transaction.atomic
def create_service_account(*, actor: Any, username: str, roles: Iterable[str] = (), first_name: str = "",
                           last_name: str = "") -> Any:
    """A machine principal (a production service fetching bundles, a CI job): no usable password, so it never
    logs in or signs; an administrator gives it roles, memberships and API keys (governance.actions.tokens)."""
    _require_admin(actor, "create service accounts")
    username = require_text(username, field="username", max_length=150)
    roles = _known_roles(roles, field="roles")
    if get_user_model().objects.filter(username=username).exists():
        raise InvalidInput(f"user {username!r} already exists", field="username")
    user = get_user_model()(username=username, first_name=first_name, last_name=last_name)
    user.set_unusable_password()
    save(user, actor=actor)
    groups = ensure_role_groups()
    user.groups.add(*(groups[r] for r in roles))
    _record_state(user, actor=actor, service_account=True)
    record_event("service_account.created", actor=actor, obj=user, object_type="User", after={
        "username": username, "name": user.get_full_name(), "roles": roles})
    return user


# --- helpers -----------------------------------------------------------------------------------------------


def _require_admin(actor: Any, doing: str) -> None:
    require_role(actor, Role.ADMIN, doing=doing)


def _locked(user: Any) -> Any:
    """The user re-read under a row lock, so two administrators' changes serialize on it. The caller's instance
    forgets what it cached (roles, signing state), since the action is about to change them."""
    _forget_cached(user)
    return get_user_model()._default_manager.select_for_update(no_key=True).get(pk=user.pk)


def _known_roles(roles: Iterable[str], *, field: str) -> list[str]:
    roles = sorted({str(r) for r in roles})
    unknown = [r for r in roles if r not in ROLE_NAMES]
    if unknown:
        raise InvalidInput(f"unknown role(s) {', '.join(unknown)}; expected some of {', '.join(ROLE_NAMES)}",
                           field=field)
    return roles


def _group_roles(user: Any) -> set[str]:
    return set(user.groups.filter(name__in=ROLE_NAMES).values_list("name", flat=True))


def _validate_password(password: str, user: Any, *, field: str) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), field=field) from exc


def _require_another_admin(user: Any, *, doing: str) -> None:
    """Someone must be left who can administer accounts (or nobody could undo the change)."""
    if not has_role(user, Role.ADMIN):
        return
    others = get_user_model().objects.filter(is_active=True).exclude(pk=user.pk).filter(
        Q(is_superuser=True) | Q(groups__name=Role.ADMIN.value))
    if not others.exists():
        raise IllegalTransition(f"cannot {doing} user {user.get_username()!r}: no other active administrator")


def _record_state(user: Any, *, actor: Any, **changes: Any) -> AccountState:
    """Write the account's snapshot (activity, roles, password state); one history row per action."""
    state = AccountState.objects.select_for_update(no_key=True).filter(user=user).first() or AccountState(user=user)
    state.active = user.is_active
    state.roles = sorted(_group_roles(user))
    for name, value in changes.items():
        setattr(state, name, value)
    save(state, actor=actor)
    _forget_cached(user)
    return state


def _forget_cached(user: Any) -> None:
    """Drop what this module and permissions.user_roles cached on the instance (also through a lazy request.user)."""
    for name in ("_governance_roles", _SIGN_STATE):
        try:
            delattr(user, name)
        except AttributeError:
            pass
    getattr(getattr(user, "_state", None), "fields_cache", {}).pop("account_state", None)
    forget_memberships(user)  # the groups a remembered block read (permissions.in_group)
