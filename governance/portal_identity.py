"""Portal pages of identity: the login page (local passwords and/or single sign-on), your sessions and "log
out everywhere", and an administrator's view of a user's sessions (end them all). Thin views over
governance.actions.sessions; the login records its session through governance.session_policy."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from governance.actions import identities, sessions
from governance.models import Role
from governance.oidc import provider
from governance.permissions import has_role, require_role, user_roles
from governance.portal_accounts import LockoutLoginView
from governance.session_policy import start_session
from governance.views import portal_view


class LoginView(LockoutLoginView):
    """The password form (unless GOVERNANCE_LOCAL_LOGIN=0) and the single sign-on button (when configured)."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "local_login": settings.GOVERNANCE_LOCAL_LOGIN,
                "sso": provider.enabled(), "sso_name": settings.GOVERNANCE_OIDC_PROVIDER_NAME}

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.GOVERNANCE_LOCAL_LOGIN:
            messages.error(request, "Password login is switched off: sign in through single sign-on.")
            response = self.render_to_response(self.get_context_data())
            response.status_code = 403
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        start_session(self.request, method="password")
        return response


def _session_context(user: Any) -> dict[str, Any]:
    return {"account": user, "sessions": list(user.portal_sessions.all()[:100]),
            "identity": identities.identity_of(user)}


@portal_view
@require_GET
def my_sessions(request: HttpRequest) -> HttpResponse:
    return render(request, "governance/identity_sessions.html", {**_session_context(request.user), "is_self": True})


@portal_view
@require_POST
def my_sessions_end(request: HttpRequest) -> HttpResponse:
    """Log out everywhere, this browser included."""
    sessions.end_all_sessions(request.user, actor=request.user, reason=request.POST.get("reason", ""))
    return redirect("login")  # this session ended too: the next request finds it so


@portal_view
@require_GET
def account_sessions(request: HttpRequest, username: str) -> HttpResponse:
    if Role.AUDITOR.value not in user_roles(request.user):
        require_role(request.user, Role.ADMIN, doing="see other users' sessions")
    user = get_object_or_404(get_user_model(), username=username)
    return render(request, "governance/identity_sessions.html", {
        **_session_context(user), "is_self": user.pk == request.user.pk,
        "can_manage": has_role(request.user, Role.ADMIN)})


@portal_view
@require_POST
def account_sessions_end(request: HttpRequest, username: str) -> HttpResponse:
    user = get_object_or_404(get_user_model(), username=username)
    count = sessions.end_all_sessions(user, actor=request.user, reason=request.POST.get("reason", ""))
    messages.success(request, f"{user.username} is logged out everywhere ({count} open session(s) ended).")
    return redirect("account_sessions", username=user.username)
