"""API authentication by key (`Authorization: Token <key>`), the key's scope, and throttling of failures.

`KeyAuthentication` replaces DRF's TokenAuthentication: it accepts the hashed API keys of
governance.actions.tokens (`pgk_...`) and, while GOVERNANCE_LEGACY_TOKENS is on, keys of DRF's authtoken table.
A key that does not authenticate (unknown, revoked, expired, owner deactivated) gets 401 with a
`WWW-Authenticate: Token` challenge; DRF would answer 403 because session authentication comes first in the
settings (and must, so that anonymous requests keep their 403). A client (by IP) that presented more than
GOVERNANCE_API_AUTH_MAX_FAILURES bad keys within GOVERNANCE_API_AUTH_FAILURE_WINDOW seconds gets 429 until the
window ends, whatever key it sends.

`AccountBackend` (the session backend) loads a user with its AccountState. `KeyScope` (a default permission class) narrows what a key may reach: a bundle-only key fetches release
bundles and nothing else; a key scoped to programs reaches only URLs under /programs/<slug>/ of those.

This module must not import DRF's views (settings import it while rest_framework.views loads), nor the
actions package at import time.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from governance.middleware import client_ip
from governance.models import ApiKey

KEYWORD = "Token"
BUNDLE_URL_NAME = "program-release-bundle"


class InvalidKey(exceptions.APIException):
    """401 with a challenge whatever authentication class comes first (DRF turns its own into 403 then)."""

    status_code = 401
    default_code = "authentication_failed"
    default_detail = "Invalid API key."
    auth_header = KEYWORD  # read by DRF's exception handler: WWW-Authenticate


class KeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        key = presented_key(request)
        if key is None:
            return None
        failures = _failure_key(request)
        if cache.get(failures, 0) >= _max_failures():
            raise exceptions.Throttled(wait=_window(), detail="Too many invalid API keys from this client.")
        try:
            return resolve_key(key)
        except InvalidKey:
            cache.add(failures, 0, timeout=_window())
            cache.incr(failures)
            raise

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


def resolve_key(key: str) -> tuple[Any, ApiKey | Token]:
    """(owner, key row) of a key that authenticates now; InvalidKey saying why otherwise."""
    from governance.actions.tokens import KEY_PREFIX, hash_key, note_use

    if key.startswith(KEY_PREFIX):
        row = ApiKey.objects.select_related("owner__account_state").filter(key_hash=hash_key(key)).first()
        if row is None:
            raise InvalidKey("Invalid API key: unknown.")
        if row.revoked_at is not None:
            raise InvalidKey("Invalid API key: revoked.")
        if row.expires_at is not None and row.expires_at <= timezone.now():
            raise InvalidKey("Invalid API key: expired.")
        if not row.owner.is_active:
            raise InvalidKey("Invalid API key: its owner is deactivated.")
        note_use(row)
        return row.owner, row
    if not getattr(settings, "GOVERNANCE_LEGACY_TOKENS", True):
        raise InvalidKey("Invalid API key: legacy tokens are not accepted here; create an API key.")
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None:
        raise InvalidKey("Invalid API key: unknown, revoked or replaced.")
    if not token.user.is_active:
        raise InvalidKey("Invalid API key: its owner is deactivated.")
    return token.user, token


def presented_key(request: Request) -> str | None:
    """The key of an `Authorization: Token <key>` header, None without one; a malformed header is 401."""
    parts = get_authorization_header(request).split()
    if not parts or parts[0].lower() != KEYWORD.lower().encode():
        return None
    if len(parts) != 2:
        raise InvalidKey("Invalid Authorization header: expected `Token <key>`.")
    try:
        return parts[1].decode("ascii")
    except UnicodeError as exc:
        raise InvalidKey("Invalid Authorization header: the key must be ASCII.") from exc


def _failure_key(request: Request) -> str:
    return f"governance:api-auth-failures:{client_ip(request._request) or 'unknown'}"


def _max_failures() -> int:
    return int(getattr(settings, "GOVERNANCE_API_AUTH_MAX_FAILURES", 20))


def _window() -> int:
    return int(getattr(settings, "GOVERNANCE_API_AUTH_FAILURE_WINDOW", 300))


class AccountBackend(ModelBackend):
    """Django's model backend, loading a session's user with its AccountState in the same query, so that
    `check_can_sign` (asked for every change request a page lists) costs no query of its own."""

    def get_user(self, user_id: Any) -> Any:
        user = get_user_model()._default_manager.select_related("account_state").filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None


class KeyScope(BasePermission):
    """A scoped API key reaches only what its scope names (403 with the reason otherwise)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        match = request._request.resolver_match
        url_name = getattr(match, "url_name", "") or ""
        if key.bundle_only and (url_name != BUNDLE_URL_NAME or request.method not in SAFE_METHODS):
            raise exceptions.PermissionDenied(f"API key {key.prefix} only fetches release bundles")
        scope = {p.slug for p in key.programs.all()}
        slug = (getattr(match, "kwargs", None) or {}).get("slug")
        if scope and not (url_name.startswith("program-") and slug in scope):
            raise exceptions.PermissionDenied(
                f"API key {key.prefix} is limited to /programs/<slug>/ of {', '.join(sorted(scope))}")
        return True
