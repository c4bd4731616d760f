"""The authentication backend of the OIDC login: mozilla-django-oidc's code flow, with the ID token checked
fully (signature, issuer, audience, expiry, nonce) and the user made by governance.actions.identities from the
(issuer, sub) pair, never matched by e-mail."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from governance.actions import identities
from governance.api.authentication import AccountBackend
from governance.errors import GovernanceError
from governance.oidc import provider

log = logging.getLogger(__name__)


def _from_provider(name: str) -> property:
    return property(lambda self: provider.setting(name))


class OIDCBackend(OIDCAuthenticationBackend):
    # Read when used, not at construction: Django builds every backend for each password login too, and the
    # discovery document must not be fetched (or required) then.
    OIDC_OP_TOKEN_ENDPOINT = _from_provider("OIDC_OP_TOKEN_ENDPOINT")
    OIDC_OP_USER_ENDPOINT = _from_provider("OIDC_OP_USER_ENDPOINT")
    OIDC_OP_JWKS_ENDPOINT = _from_provider("OIDC_OP_JWKS_ENDPOINT")
    OIDC_RP_CLIENT_ID = _from_provider("OIDC_RP_CLIENT_ID")
    OIDC_RP_CLIENT_SECRET = _from_provider("OIDC_RP_CLIENT_SECRET")
    OIDC_RP_SIGN_ALGO = _from_provider("OIDC_RP_SIGN_ALGO")
    OIDC_RP_IDP_SIGN_KEY = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.UserModel = get_user_model()
        self.refresh_token = ""

    @staticmethod
    def get_settings(attr: str, *args: Any) -> Any:
        return provider.setting(attr, *args)

    def authenticate(self, request: Any, **kwargs: Any) -> Any:
        """Only the OIDC callback (code and state, no password) reaches mozilla-django-oidc's flow; a provider
        that does not answer properly is a failed login (logged), never a server error."""
        if not provider.enabled() or "password" in kwargs or request is None:
            return None
        try:
            return super().authenticate(request, **kwargs)
        except (provider.ProviderError, SuspiciousOperation, GovernanceError) as exc:
            log.warning("OIDC login refused: %s", exc)
        except Exception as exc:  # requests' HTTPError from the token or userinfo endpoint, JSON errors
            log.warning("OIDC login failed at the provider: %s", exc)
        return None

    def get_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        token_info = super().get_token(payload)
        self.refresh_token = token_info.get("refresh_token") or ""  # the provider check's grant
        return token_info

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        claims = provider.verify_id_token(token)
        if claims.get("nonce") != kwargs.get("nonce"):
            raise SuspiciousOperation("the ID token's nonce is not the one this login sent")
        return claims

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        claims = dict(payload)
        if provider.setting("OIDC_OP_USER_ENDPOINT"):
            userinfo = self.get_userinfo(access_token, id_token, payload)
            if userinfo.get("sub") == payload["sub"]:  # OIDC core 5.3.2: else the userinfo must not be used
                claims = {**userinfo, **payload}
        claims["groups"] = provider.groups(claims)
        login = identities.ProviderLogin(issuer=payload["iss"], subject=payload["sub"], claims=claims,
                                         refresh_token=self.refresh_token)
        return identities.sign_in(login)

    def get_user(self, user_id: Any) -> Any:
        """As the session backend: with AccountState, and None for a deactivated user (mozilla-django-oidc's own
        get_user would keep a deactivated user's session)."""
        return AccountBackend().get_user(user_id)
