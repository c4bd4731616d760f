"""Principals' governance state next to Django's User (which stays the authentication record).

AccountState holds what Part 11 needs and Django's User lacks: whether the current password was set by someone
else (then its owner must change it before the account may sign), who set it and when, and a snapshot of the
account's activity and roles. Every account action rewrites the snapshot through django-simple-history, so the
history timeline shows each change of roles, activity and password state with the acting user.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.db import models
from django.dispatch import receiver
from simple_history.models import HistoricalRecords


class AccountState(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="account_state")
    must_change_password = models.BooleanField(
        default=False, help_text="The password was set by someone else: its owner must change it before signing.")
    password_set_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+", help_text="Empty: the owner, or the system.")
    password_set_at = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True, help_text="Mirror of User.is_active, for the history timeline.")
    roles = models.JSONField(default=list, blank=True, help_text="The user's global roles (sorted), as granted.")
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        verbose_name = "account state"

    def __str__(self) -> str:
        return f"account state of {self.user}"


# Session key read by the portal's MustChangePasswordMiddleware: set at login, so pages cost no extra query. The
# flag only turns on with a password someone else set, which ends the user's sessions (Django binds a session
# to the password hash), so a session's value cannot go stale in the unsafe direction.
MUST_CHANGE_PASSWORD_SESSION_KEY = "governance_must_change_password"


@receiver(user_logged_in, dispatch_uid="governance-remember-must-change-password")
def remember_password_state(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[MUST_CHANGE_PASSWORD_SESSION_KEY] = AccountState.objects.filter(
            user_id=user.pk, must_change_password=True).exists()
