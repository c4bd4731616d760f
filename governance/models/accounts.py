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
from django.utils import timezone
from simple_history.models import HistoricalRecords


class AccountState(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="account_state")
    must_change_password = models.BooleanField(
        default=False, help_text="The password was set by someone else: its owner must change it before signing.")
    password_set_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+", help_text="Empty: the owner, or the system.")
    password_set_at = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True, help_text="Mirror of User.is_active, for the history timeline.")
    service_account = models.BooleanField(
        default=False, help_text="A machine principal: no password, never signs, authenticates with API keys.")
    roles = models.JSONField(default=list, blank=True, help_text="The user's global roles (sorted), as granted.")
    sessions_ended_at = models.DateTimeField(
        null=True, blank=True, help_text="Logout everywhere: portal sessions started before this no longer count.")
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        verbose_name = "account state"

    def __str__(self) -> str:
        return f"account state of {self.user}"



class ApiKey(models.Model):
    """An API key, stored as its SHA-256 hash and a short public prefix (the key is shown once, at creation).

    The key acts as its owner (a person or a service account), narrowed by its scope: `programs` (empty = every
    program the owner may see) and `bundle_only` (only GET of release bundles). It stops at `expires_at`, on
    revocation, and as soon as its owner is deactivated.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="The key's public start, to recognize it.")
    key_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the key (hex).")
    programs = models.ManyToManyField("governance.Program", blank=True, related_name="+",
                                      help_text="Empty: every program the owner may see.")
    bundle_only = models.BooleanField(default=False, help_text="Only fetches release bundles (read-only).")
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    history = HistoricalRecords(excluded_fields=["last_used_at"])

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}\u2026 ({self.name}) of {self.owner}"

    @property
    def state(self) -> str:
        """live, expired or revoked (the owner's activity aside)."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at is not None and self.expires_at <= timezone.now() else "live"


class LoginThrottle(models.Model):
    """Failed portal logins of one username: after too many, the username is locked out with a back-off that
    doubles with each lockout (settings GOVERNANCE_LOGIN_*). Cleared by a successful login."""

    username = models.CharField(max_length=150, unique=True, help_text="Case-folded, as typed.")
    failures = models.PositiveIntegerField(default=0)
    first_failure_at = models.DateTimeField(null=True, blank=True)
    lockouts = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"login throttle of {self.username}"


# Session key read by the portal's MustChangePasswordMiddleware: set at login, so pages cost no extra query. The
# flag only turns on with a password someone else set, which ends the user's sessions (Django binds a session
# to the password hash), so a session's value cannot go stale in the unsafe direction.
MUST_CHANGE_PASSWORD_SESSION_KEY = "governance_must_change_password"


@receiver(user_logged_in, dispatch_uid="governance-remember-must-change-password")
def remember_password_state(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[MUST_CHANGE_PASSWORD_SESSION_KEY] = AccountState.objects.filter(
            user_id=user.pk, must_change_password=True).exists()
