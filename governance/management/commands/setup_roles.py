"""`manage.py setup_roles`: create the role groups (author, reviewer, releaser, auditor, admin) if missing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from governance.actions import roles as role_actions


class Command(BaseCommand):
    help = "Create the role groups the product's permissions rely on (idempotent; audited when any is created)."

    def handle(self, *args: Any, **options: Any) -> None:
        groups = role_actions.setup_role_groups(actor=None)
        self.stdout.write(f"role groups: {', '.join(sorted(groups))}")
