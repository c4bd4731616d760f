"""Role groups and user accounts (for set-up, demos and tests; day-to-day user admin is Django's)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from governance.actions._common import require_text
from governance.audit import record_event
from governance.errors import InvalidInput
from governance.models import Role
from governance.permissions import ROLE_NAMES, ensure_role_groups, require_role


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
def create_user_with_roles(*, actor: Any, username: str, password: str, roles: Iterable[str] = (),
                           first_name: str = "", last_name: str = "", email: str = "") -> Any:
    """Create a user in the given role groups; audited as "user.created" (never with the password).

    `actor=None` is the system (a management command run by an operator); any other actor needs the admin role.
    """
    if actor is not None:
        require_role(actor, Role.ADMIN, doing="create users")
    username = require_text(username, field="username", max_length=150)
    roles = sorted(set(roles))
    unknown = [r for r in roles if r not in ROLE_NAMES]
    if unknown:
        raise InvalidInput(f"unknown role(s) {', '.join(unknown)}; expected some of {', '.join(ROLE_NAMES)}",
                           field="roles")
    if not password:
        raise InvalidInput("a password is required", field="password")
    model = get_user_model()
    if model.objects.filter(username=username).exists():
        raise InvalidInput(f"user {username!r} already exists", field="username")
    user = model.objects.create_user(username=username, password=password, email=email,
                                     first_name=first_name, last_name=last_name)
    groups = ensure_role_groups()
    user.groups.add(*(groups[r] for r in roles))
    record_event("user.created", actor=actor, obj=user, object_type="User", after={
        "username": username, "name": user.get_full_name(), "email": email, "roles": roles})
    return user
