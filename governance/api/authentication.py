"""API authentication by key: `Authorization: Token <key>`.

Replaces DRF's TokenAuthentication so that a key that does not (or no longer) authenticate gets 401 with a
`WWW-Authenticate: Token` challenge: DRF would answer 403 because session authentication comes first in the
settings (and must, so that anonymous requests keep their 403). A deactivated owner's key is refused at once.

This module must not import DRF's views (settings import it while rest_framework.views loads).
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token
from rest_framework.request import Request

KEYWORD = "Token"


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
        token = Token.objects.select_related("user").filter(key=key).first()
        if token is None:
            raise InvalidKey("Invalid API key: unknown, revoked or replaced.")
        if not token.user.is_active:
            raise InvalidKey("Invalid API key: its owner is deactivated.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


def presented_key(request: Request) -> str | None:
    """The key of an `Authorization: Token <key>` header, None without one; a malformed header is 401."""
    parts = get_authorization_header(request).split()
    if not parts or parts[0].lower() != KEYWORD.lower().encode():
        return None
    if len(parts) != 2:
        raise InvalidKey("Invalid Authorization header: expected `Token <key>`.")
    try:
        return parts[1].decode()
    except UnicodeError as exc:
        raise InvalidKey("Invalid Authorization header: the key must be ASCII.") from exc
