"""The configured provider: its discovery document, its token endpoint, and ID token verification.

mozilla-django-oidc reads fixed endpoint settings; `setting()` answers its setting names from GOVERNANCE_OIDC_*
and the discovery document instead, fetched when first needed (never at start-up) and kept for an hour.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

import jwt
import requests
from django.conf import settings
from django.urls import reverse
from mozilla_django_oidc.utils import import_from_settings

DISCOVERY_TTL = 3600.0
LEEWAY = 30  # seconds of clock skew accepted on exp/iat
_discovered: dict[str, tuple[float, dict[str, Any]]] = {}
_jwks_clients: dict[str, jwt.PyJWKClient] = {}
_lock = threading.Lock()


class ProviderError(Exception):
    """The provider did not answer as OpenID Connect requires (network, HTTP error, bad token)."""


def enabled() -> bool:
    return bool(settings.GOVERNANCE_OIDC_ISSUER and settings.GOVERNANCE_OIDC_CLIENT_ID)


def discovery() -> dict[str, Any]:
    """The issuer's /.well-known/openid-configuration (its `issuer` must be the configured one)."""
    issuer = settings.GOVERNANCE_OIDC_ISSUER
    with _lock:
        cached = _discovered.get(issuer)
        if cached and time.monotonic() - cached[0] < DISCOVERY_TTL:
            return cached[1]
    try:
        response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=settings.GOVERNANCE_OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderError(f"discovery document of {issuer} unavailable: {exc}") from exc
    if document.get("issuer", "").rstrip("/") != issuer:
        raise ProviderError(f"the discovery document names issuer {document.get('issuer')!r}, not {issuer!r}")
    with _lock:
        _discovered[issuer] = (time.monotonic(), document)
    return document


SETTING_SOURCES = {  # mozilla-django-oidc's setting -> where this product keeps it
    "OIDC_OP_AUTHORIZATION_ENDPOINT": lambda: discovery()["authorization_endpoint"],
    "OIDC_OP_TOKEN_ENDPOINT": lambda: discovery()["token_endpoint"],
    "OIDC_OP_USER_ENDPOINT": lambda: discovery().get("userinfo_endpoint"),
    "OIDC_OP_JWKS_ENDPOINT": lambda: discovery()["jwks_uri"],
    "OIDC_RP_CLIENT_ID": lambda: settings.GOVERNANCE_OIDC_CLIENT_ID,
    "OIDC_RP_CLIENT_SECRET": lambda: settings.GOVERNANCE_OIDC_CLIENT_SECRET,
    "OIDC_RP_SCOPES": lambda: settings.GOVERNANCE_OIDC_SCOPES,
    "OIDC_RP_SIGN_ALGO": lambda: settings.GOVERNANCE_OIDC_SIGN_ALGO,
    "OIDC_RP_IDP_SIGN_KEY": lambda: None,
    "OIDC_TIMEOUT": lambda: settings.GOVERNANCE_OIDC_TIMEOUT,
    "OIDC_USE_PKCE": lambda: True,
    "OIDC_AUTHENTICATION_CALLBACK_URL": lambda: "oidc_authentication_callback",
    "LOGIN_REDIRECT_URL_FAILURE": lambda: reverse("login"),
}


def setting(name: str, *default: Any) -> Any:
    source = SETTING_SOURCES.get(name)
    return source() if source is not None else import_from_settings(name, *default)


class OAuthError(ProviderError):
    """The token endpoint's error answer; `error` is the OAuth code (RFC 6749 5.2)."""

    def __init__(self, response: requests.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = {}
        self.error = str(body.get("error") or f"http_{response.status_code}")
        self.description = str(body.get("error_description") or "")
        super().__init__(f"the provider answered {response.status_code} {self.error}"
                         f"{': ' + self.description if self.description else ''}")


def token_request(data: dict[str, str]) -> dict[str, Any]:
    """POST to the token endpoint with the client's credentials; the JSON answer, or ProviderError carrying
    the OAuth error code (`invalid_grant` for a disabled user's refresh token)."""
    payload = {**data, "client_id": settings.GOVERNANCE_OIDC_CLIENT_ID,
               "client_secret": settings.GOVERNANCE_OIDC_CLIENT_SECRET}
    try:
        response = requests.post(discovery()["token_endpoint"], data=payload, timeout=settings.GOVERNANCE_OIDC_TIMEOUT)
    except requests.RequestException as exc:
        raise ProviderError(f"token endpoint unreachable: {exc}") from exc
    if response.status_code == 200:
        try:
            return response.json()
        except ValueError as exc:
            raise ProviderError(f"the token endpoint answered no JSON: {exc}") from exc
    raise OAuthError(response)


def verify_id_token(token: str) -> dict[str, Any]:
    """The ID token's claims once its signature (the provider's JWKS), issuer, audience and expiry check out;
    the nonce is the caller's to compare (it knows which one it sent)."""
    if not token:
        raise ProviderError("the provider's answer has no ID token")
    algorithm = settings.GOVERNANCE_OIDC_SIGN_ALGO
    try:
        key = _jwks_client().get_signing_key_from_jwt(token).key
        return jwt.decode(token, key, algorithms=[algorithm], audience=settings.GOVERNANCE_OIDC_CLIENT_ID,
                          issuer=settings.GOVERNANCE_OIDC_ISSUER, leeway=LEEWAY,
                          options={"require": ["iss", "sub", "aud", "exp", "iat"]})
    except jwt.PyJWTError as exc:
        raise ProviderError(f"the ID token does not verify: {exc}") from exc


def _jwks_client() -> jwt.PyJWKClient:
    uri = discovery()["jwks_uri"]
    with _lock:
        if uri not in _jwks_clients:
            _jwks_clients[uri] = jwt.PyJWKClient(uri, lifespan=DISCOVERY_TTL, timeout=int(settings.GOVERNANCE_OIDC_TIMEOUT))
        return _jwks_clients[uri]


def auth_time(claims: dict[str, Any]) -> datetime | None:
    value = claims.get("auth_time")
    return datetime.fromtimestamp(int(value), tz=timezone.utc) if isinstance(value, (int, float)) else None


def groups(claims: dict[str, Any]) -> list[str]:
    """The configured groups claim, as a list of names (a provider may send one string)."""
    value = claims.get(settings.GOVERNANCE_OIDC_GROUPS_CLAIM) or []
    return [value] if isinstance(value, str) else [str(g) for g in value]
