"""Identities at an OpenID Connect provider, signatures made through it, and portal sessions.

An `Identity` links a user to one (issuer, sub) pair: the provider's stable name for the person, never their
e-mail (which may be reassigned). It keeps the refresh token (encrypted) that the scheduled provider check uses
to learn that the provider disabled the person. A `SignatureChallenge` is a decision waiting for the signer to
re-authenticate at the provider: the content hash the page showed, the reason and meaning, with single-use
`state` and `nonce`. A `PortalSession` is one signed-in browser, so administrators can list and end sessions.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.db import models
from django.dispatch import receiver
from simple_history.models import HistoricalRecords

from governance.models.choices import Decision, SignatureMeaning


class Identity(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="identity")
    issuer = models.CharField(max_length=255, help_text="The provider's issuer URL (the ID token's `iss`).")
    subject = models.CharField(max_length=255, help_text="The provider's identifier of the person (`sub`).")
    claims = models.JSONField(default=dict, blank=True,
                              help_text="Profile claims at the last login (name, e-mail, groups), never tokens.")
    refresh_token = models.TextField(blank=True, help_text="Encrypted with a key derived from SECRET_KEY.")
    last_login_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True, help_text="Last answer of the provider check.")
    check_error = models.CharField(max_length=500, blank=True, help_text="Last check that got no answer.")
    disabled_at = models.DateTimeField(null=True, blank=True,
                                       help_text="When the provider check found the person disabled.")
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(excluded_fields=["refresh_token", "checked_at", "check_error"])

    class Meta:
        verbose_name_plural = "identities"
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="one_user_per_identity")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class SignatureChallenge(models.Model):
    """A decision kept server-side while its signer re-authenticates at the provider (single use)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    change_request = models.ForeignKey("governance.ChangeRequest", on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=20, choices=Decision.choices)
    content_hash = models.CharField(max_length=64, help_text="What the page showed the signer.")
    reason = models.TextField(blank=True)
    meaning = models.CharField(max_length=20, choices=SignatureMeaning.choices)
    state_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the `state` parameter.")
    nonce = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True, help_text="Set when its callback arrived (single use).")
    outcome = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"{self.decision} of CR-{self.change_request_id} by {self.user_id}"


class PortalSession(models.Model):
    """One signed-in browser session (the key itself stays in Django's session store; only its hash is here)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="portal_sessions")
    key_hash = models.CharField(max_length=64, unique=True)
    method = models.CharField(max_length=20, help_text="password or oidc")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"session {self.pk} of {self.user_id}"


# Session keys of governance.session_policy: when the session started, when it was last seen, and the marker of
# its PortalSession row. Every login dates its session here (password, SSO, a test's force_login), with no
# database write; the receiver lives with the models so it is connected before any request.
SESSION_STARTED, SESSION_SEEN, SESSION_MARKER = (
    "governance_session_started", "governance_session_seen", "governance_session_marker")


@receiver(user_logged_in, dispatch_uid="governance-session-started")
def stamp_session_start(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_STARTED] = request.session[SESSION_SEEN] = time.time()
