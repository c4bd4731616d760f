"""Memberships: the roles one user holds on one program.

A membership is what makes a user a member of a program (it is the through table of `Program.members`) and
carries the program-scoped roles (author, reviewer, releaser, auditor) the permission checks read
(governance.permissions). A membership with no role lets its holder read the program and fetch its bundles,
nothing more. Global roles stay Django groups: admin and auditor act on every program; the author, reviewer and
releaser groups are only the roles a new membership gets when nobody names any (docs/compliance.md, 4b).

Memberships change only through governance.actions.memberships (audited, with the roles before and after);
django-simple-history keeps each version of a row with the acting user.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from governance.models.choices import Role

# The roles a membership may carry; admin is global only.
PROGRAM_ROLES: tuple[str, ...] = (Role.AUTHOR.value, Role.REVIEWER.value, Role.RELEASER.value, Role.AUDITOR.value)


class MembershipSource(models.TextChoices):
    """Who decided a membership's roles: a person (portal, API, command), the identity provider's group claims,
    or the migration that turned global roles into program roles."""

    MANUAL = "manual", "Granted by hand"
    OIDC = "oidc", "Mapped from identity provider groups"
    MIGRATION = "migration", "Carried over from global roles"


class ProgramMembership(models.Model):
    program = models.ForeignKey("governance.Program", on_delete=models.PROTECT, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="program_memberships")
    roles = models.JSONField(default=list, blank=True,
                             help_text="The user's roles on this program (sorted); empty: read access only.")
    source = models.CharField(max_length=16, choices=MembershipSource.choices, default=MembershipSource.MANUAL)
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+", help_text="Who last set the roles; empty: the system.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["program", "user"]
        constraints = [models.UniqueConstraint(fields=["program", "user"], name="membership_unique_per_program")]

    def __str__(self) -> str:
        return f"{self.user} on {self.program}: {', '.join(self.roles) or 'no role'}"
