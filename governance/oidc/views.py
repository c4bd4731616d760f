"""The OIDC login's two URLs (mozilla-django-oidc's views, reading this product's configuration) and the
signing round trip: a decision kept server-side goes to the provider with prompt=login and max_age=0, and its
callback signs it once governance.actions.identities accepts the provider's proof."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from governance.actions import identities
from governance.models import ChangeRequestStatus, SignatureChallenge
from governance.models.identity import SESSION_MARKER
from governance.oidc import provider
from governance.session_policy import start_session
from governance.views import error_page, portal_view

log = logging.getLogger(__name__)


class LoginStart(OIDCAuthenticationRequestView):
    """Redirect to the provider's authorization endpoint (state, nonce and PKCE kept in the session)."""

    get_settings = staticmethod(provider.setting)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not provider.enabled():
            raise Http404("single sign-on is not configured")
        try:
            return super().dispatch(request, *args, **kwargs)
        except provider.ProviderError as exc:
            log.warning("OIDC login cannot start: %s", exc)
            return error_page(request, f"The identity provider is not reachable: {exc}", 503)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)  # endpoints: read in get(), below

    def get(self, request: HttpRequest) -> HttpResponse:
        self.OIDC_OP_AUTH_ENDPOINT = provider.setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        self.OIDC_RP_CLIENT_ID = provider.setting("OIDC_RP_CLIENT_ID")
        return super().get(request)


class LoginCallback(OIDCAuthenticationCallbackView):
    """The provider's answer to a login: mozilla-django-oidc checks state and nonce, OIDCBackend makes the user;
    a refused login goes back to the login page saying so."""

    get_settings = staticmethod(provider.setting)

    def login_success(self) -> HttpResponse:
        response = super().login_success()
        if not self.request.session.get(SESSION_MARKER):  # a new login (the same user again keeps their session)
            start_session(self.request, method="oidc")
        return response

    def login_failure(self) -> HttpResponse:
        messages.error(self.request, "Single sign-on did not sign you in: the identity provider refused, or this "
                                     "account is deactivated here.")
        return HttpResponseRedirect(reverse("login"))


# --- signatures ---------------------------------------------------------------------------------------------


def sign_redirect_uri(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("oidc_sign_callback"))


@portal_view
@require_GET
def sign_start(request: HttpRequest) -> HttpResponse:
    """Send the signer to re-authenticate at the provider for the decision `state` names (kept server-side by
    identities.begin_signature); prompt=login and max_age=0 ask for a fresh login whatever the provider session."""
    challenge = SignatureChallenge.objects.filter(state_hash=identities.state_hash(request.GET.get("state", "")),
                                                  user=request.user, used_at__isnull=True).first()
    if challenge is None:
        raise Http404("no signature is waiting for re-authentication")
    params = {"response_type": "code", "client_id": provider.setting("OIDC_RP_CLIENT_ID"), "scope": "openid",
              "redirect_uri": sign_redirect_uri(request), "state": request.GET["state"], "nonce": challenge.nonce,
              "prompt": "login", "max_age": "0"}
    try:
        endpoint = provider.setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
    except provider.ProviderError as exc:
        return error_page(request, f"The identity provider is not reachable: {exc}", 503)
    return HttpResponseRedirect(f"{endpoint}?{urlencode(params)}")


@portal_view
@require_GET
def sign_callback(request: HttpRequest) -> HttpResponse:
    """The provider's answer to a signing re-authentication: the challenge is claimed once, the code exchanged,
    the ID token verified, and the decision signed if the proof holds (refusals are audited by the actions)."""
    challenge = identities.claim_challenge(request.GET.get("state", ""), actor=request.user)
    # A refusal (403, audited) or a change of the content while the signer was at the provider (409) renders as
    # the portal's error page with the action's message (portal_view).
    review = identities.sign_with_provider(challenge, actor=request.user, proof=_proof(request, challenge))
    cr = review.change_request
    cr.refresh_from_db()
    done = ("Signed through the identity provider. Version is approved and frozen."
            if cr.status == ChangeRequestStatus.APPROVED else "Signed through the identity provider.")
    messages.success(request, done)
    return redirect("change_request_detail", pk=cr.pk)


def _proof(request: HttpRequest, challenge: SignatureChallenge) -> identities.SignatureProof:
    """The verified ID token of the answer; a provider error or an unverifiable token is refused (audited)."""
    if request.GET.get("error"):
        identities.refuse_signature(challenge, actor=request.user, problem=(
            f"the provider answered {request.GET['error']}: {request.GET.get('error_description', '')}"))
    try:
        tokens = provider.token_request({"grant_type": "authorization_code", "code": request.GET.get("code", ""),
                                         "redirect_uri": sign_redirect_uri(request)})
        claims = provider.verify_id_token(tokens.get("id_token", ""))
    except provider.ProviderError as exc:
        identities.refuse_signature(challenge, actor=request.user, problem=str(exc))
    return identities.SignatureProof(issuer=claims["iss"], subject=str(claims["sub"]), nonce=claims.get("nonce", ""),
                                     auth_time=provider.auth_time(claims))
