"""Portal session policy (entry point): idle timeout, absolute lifetime and "log out everywhere", checked on every
request of a signed-in user; the session list's records start at login and end at logout.

The session itself keeps when it started, when it was last seen (rewritten at most once a minute, so a page
costs no extra write) and the marker of its PortalSession row. Ending a session for a timeout is audited
("session.expired") by governance.actions.sessions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from governance.actions import sessions
from governance.middleware import client_ip
from governance.models.identity import SESSION_MARKER, SESSION_SEEN, SESSION_STARTED

STARTED, SEEN, MARKER = SESSION_STARTED, SESSION_SEEN, SESSION_MARKER
SEEN_RESOLUTION = 60.0  # seconds: the idle timeout is this precise, and a session is written at most this often


@receiver(user_logged_out, dispatch_uid="governance-session-ended")
def _record_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    marker = request.session.get(MARKER) if request is not None and hasattr(request, "session") else None
    if marker and user is not None:
        sessions.end_session(marker, actor=user, reason="logout")


def start_session(request: HttpRequest, *, method: str) -> None:
    """After a portal login: the PortalSession record (audited "session.started") the session list shows."""
    _, marker = sessions.session_started(request.user, method=method, ip=client_ip(request),
                                         user_agent=request.META.get("HTTP_USER_AGENT", ""))
    request.session[MARKER] = marker


def why_ended(request: HttpRequest, user: Any, now: float) -> str:
    """Why this session may not go on ("" when it may)."""
    session = request.session
    started, seen = session.setdefault(STARTED, now), session.setdefault(SEEN, now)
    state = getattr(user, "_state", None) and user._state.fields_cache.get("account_state")
    ended_everywhere = getattr(state, "sessions_ended_at", None)
    if ended_everywhere is not None and started < ended_everywhere.timestamp():
        return "logged out everywhere"
    if now - started > settings.GOVERNANCE_SESSION_MAX_SECONDS:
        return f"absolute lifetime of {settings.GOVERNANCE_SESSION_MAX_SECONDS} s reached"
    if now - seen > settings.GOVERNANCE_SESSION_IDLE_SECONDS:
        return f"idle for more than {settings.GOVERNANCE_SESSION_IDLE_SECONDS} s"
    return ""


class SessionPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not hasattr(request, "session"):
            return self.get_response(request)
        now = time.time()
        reason = why_ended(request, user, now)
        if reason:
            return self._end(request, user, reason)
        if now - request.session[SEEN] > SEEN_RESOLUTION:
            request.session[SEEN] = now
            if request.session.get(MARKER):
                sessions.session_seen(request.session[MARKER])
        return self.get_response(request)

    def _end(self, request: HttpRequest, user: Any, reason: str) -> HttpResponse:
        marker = request.session.get(MARKER)
        if marker:
            sessions.end_session(marker, actor=None, reason=reason, action="session.expired")
        auth.logout(request)
        if request.path.startswith("/api/"):
            return self.get_response(request)  # now anonymous: the API answers 401/403 itself
        messages.info(request, f"Your session ended ({reason}); please sign in again.")
        return HttpResponseRedirect(f"{reverse('login')}?{urlencode({'next': request.get_full_path()})}")
