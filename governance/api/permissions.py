"""Per-object visibility for the API: a row exists for a user only if its program is visible to them.

Rights to act (roles, membership, segregation of duties) are decided by the actions; this module only hides
what a user may not see, so a non-member gets 404, never a hint that the program exists.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from governance.permissions import sees_every_program, visible_programs


def restrict_to_visible(queryset: QuerySet, user: Any, program_path: str) -> QuerySet:
    """`queryset` limited to rows whose program (reached through `program_path`; "" = the row is the program)
    the user may see. Rows without a program (user and role events) are for administrators and auditors."""
    if sees_every_program(user):
        return queryset
    key = f"{program_path}__in" if program_path else "pk__in"
    return queryset.filter(Q(**{key: visible_programs(user).values("pk")}))
