"""Portal sessions as records: each login starts one, logout, the idle timeout and the absolute lifetime end
it, and "log out everywhere" (the user, or an administrator for them) ends every session the user has, all
audited. Ending everywhere stamps AccountState.sessions_ended_at, which governance.session_policy compares on
each request with the session's start at no query cost (the session's user is loaded with its AccountState)."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from governance.actions._common import create, user_ref
from governance.actions.accounts import _record_state
from governance.audit import record_event
from governance.models import PortalSession, Role
from governance.permissions import require_role


def open_sessions(user: Any) -> Any:
    return PortalSession.objects.filter(user=user, ended_at__isnull=True)


@transaction.atomic
def session_started(user: Any, *, method: str, ip: str | None, user_agent: str) -> tuple[PortalSession, str]:
    """Record a login; returns the row and the marker the session keeps to name it (only its hash is stored)."""
    marker = secrets.token_urlsafe(32)
    row = create(PortalSession, by=user, user=user, key_hash=marker_hash(marker), method=method, ip_address=ip,
                 user_agent=(user_agent or "")[:300], last_seen_at=timezone.now())
    record_event("session.started", actor=user, obj=user, object_type="User",
                 after={"session": row.pk, "method": method, "ip": ip})
    return row, marker


def marker_hash(marker: str) -> str:
    return hashlib.sha256(marker.encode()).hexdigest()


def session_seen(marker: str) -> None:
    """Bookkeeping for the session list (throttled by the caller): when the session was last used."""
    PortalSession.objects.filter(key_hash=marker_hash(marker), ended_at__isnull=True).update(
        last_seen_at=timezone.now())


@transaction.atomic
def end_session(marker: str, *, actor: Any, reason: str, action: str = "session.ended") -> PortalSession | None:
    """End the session the marker names (logout, or "session.expired" for a timeout); None when already ended."""
    row = PortalSession.objects.select_for_update(no_key=True).select_related("user").filter(
        key_hash=marker_hash(marker), ended_at__isnull=True).first()
    if row is None:
        return None
    row.ended_at, row.end_reason = timezone.now(), reason[:100]
    row.save(update_fields=["ended_at", "end_reason"])
    record_event(action, actor=actor, obj=row.user, object_type="User", reason=reason,
                 after={"session": row.pk, "method": row.method, "started_at": row.started_at.isoformat()})
    return row


@transaction.atomic
def end_all_sessions(user: Any, *, actor: Any, reason: str = "") -> int:
    """Log `user` out everywhere: every portal session started before now stops at its next request. The user
    themself or an administrator; returns how many recorded sessions were open."""
    if getattr(actor, "pk", None) != user.pk:
        require_role(actor, Role.ADMIN, doing="end other users' sessions")
    now = timezone.now()
    ended = open_sessions(user).update(ended_at=now, end_reason="logged out everywhere")
    _record_state(user, actor=actor, sessions_ended_at=now)
    record_event("sessions.ended_everywhere", actor=actor, obj=user, object_type="User", reason=reason,
                 after={"user": user_ref(user), "sessions_ended": ended, "at": now.isoformat()})
    return ended
