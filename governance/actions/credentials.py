"""Passwords as credentials: re-authentication outside the login page and the login lockout it counts towards.

Below both accounts (people, roles) and tokens (API keys), which each need them: keys are made by re-entering
the password, and every wrong password anywhere counts towards the same lockout.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from governance.audit import record_event
from governance.errors import AuthenticationFailed
from governance.models import LoginThrottle


def verify_password(user: Any, password: str | None, *, denied: str, field: str = "password",
                    what: str = "password") -> None:
    """Re-authentication outside the login page (API tokens and keys, password change): a wrong password is
    recorded as `denied` (committed) and counts towards the same lockout as failed portal logins, so the API
    is no way around it; a locked-out user is refused before the password is even checked."""
    name = user.get_username()
    remaining = login_lockout_remaining(name)
    if remaining:
        raise AuthenticationFailed(f"user {name!r} is locked out after repeated wrong passwords: try again in "
                                   f"{remaining} seconds", field=field)
    if password and user.check_password(password):
        return
    with transaction.atomic():
        record_event(denied, actor=user, obj=user, object_type="User", reason=f"wrong {what}")
    record_login_failure(name)
    raise AuthenticationFailed(f"wrong {what} for user {name!r} (the attempt was recorded)", field=field)


# --- portal login lockout --------------------------------------------------------------------------------


def login_lockout_remaining(username: str) -> int:
    """Seconds the username is still locked out of the portal login (0: it is not)."""
    row = LoginThrottle.objects.filter(username=_login_key(username)).only("locked_until").first()
    if row is None or row.locked_until is None:
        return 0
    return max(0, math.ceil((row.locked_until - timezone.now()).total_seconds()))


@transaction.atomic
def record_login_failure(username: str) -> int:
    """Count a failed portal login of `username`. The GOVERNANCE_LOGIN_MAX_FAILURES-th failure within
    GOVERNANCE_LOGIN_FAILURE_WINDOW seconds locks it out for GOVERNANCE_LOGIN_LOCKOUT_SECONDS, doubled for each
    earlier lockout since the last successful login (at most GOVERNANCE_LOGIN_LOCKOUT_MAX_SECONDS); each
    lockout is audited as "auth.locked_out". Returns the lockout's length in seconds (0: not locked out)."""
    limit = int(getattr(settings, "GOVERNANCE_LOGIN_MAX_FAILURES", 5))
    if limit <= 0 or not username:
        return 0
    now = timezone.now()
    row = LoginThrottle.objects.select_for_update(no_key=True).get_or_create(username=_login_key(username))[0]
    window = timedelta(seconds=float(getattr(settings, "GOVERNANCE_LOGIN_FAILURE_WINDOW", 900)))
    if row.first_failure_at is None or now - row.first_failure_at > window:
        row.failures, row.first_failure_at = 0, now
    row.failures += 1
    seconds = 0
    if row.failures >= limit:
        base = float(getattr(settings, "GOVERNANCE_LOGIN_LOCKOUT_SECONDS", 60))
        seconds = int(min(base * 2 ** row.lockouts, float(getattr(settings, "GOVERNANCE_LOGIN_LOCKOUT_MAX_SECONDS",
                                                                      3600))))
        row.lockouts += 1
        row.failures, row.first_failure_at, row.locked_until = 0, None, now + timedelta(seconds=seconds)
        user = get_user_model().objects.filter(username=username).first()
        record_event("auth.locked_out", actor=None, obj=user, object_type="User",
                     object_id=user.pk if user else row.username, reason=f"{limit} failed portal logins",
                     after={"username": row.username, "seconds": seconds, "lockout": row.lockouts})
    row.save()
    return seconds


def clear_login_failures(username: str) -> None:
    """A successful login forgets the failures and the back-off."""
    LoginThrottle.objects.filter(username=_login_key(username)).delete()


def _login_key(username: str) -> str:
    return (username or "").strip().casefold()[:150]
