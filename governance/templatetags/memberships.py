"""Program roles in templates other views render.

`{% program_members program %}` renders the program page's "Members and roles" section (the list for every
member; the forms for those who may manage it: governance.actions.memberships). `{% program_role program
"author" as may_author %}` asks whether the signed-in user holds a role on that program (admins hold every
role), for links and buttons that belong to one program.
"""

from __future__ import annotations

from typing import Any

from django import template

from governance.actions import memberships as membership_actions
from governance.models import PROGRAM_ROLES, Program, Role
from governance.permissions import has_role

register = template.Library()


@register.simple_tag(takes_context=True)
def program_role(context: dict[str, Any], program: Program, role: str) -> bool:
    return has_role(context.get("user"), role, program)


@register.inclusion_tag("governance/_members.html", takes_context=True)
def program_members(context: dict[str, Any], program: Program) -> dict[str, Any]:
    user = context.get("user")
    memberships = program.memberships.select_related("user", "granted_by").order_by("user__username")
    return {
        "program": program, "memberships": memberships, "csrf_token": context.get("csrf_token"),
        "roles": [(role, Role(role).label) for role in PROGRAM_ROLES],
        "can_manage_roles": membership_actions.may_manage_roles(program, user),
        "can_manage_members": membership_actions.may_manage_members(program, user),
    }
