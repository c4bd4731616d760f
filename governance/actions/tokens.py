"""API tokens: a user creates or rotates their own token by re-entering the password (audited, never the key).

A token authenticates requests; it never signs. Signing steps re-authenticate with the password in the body.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from rest_framework.authtoken.models import Token

from governance.audit import record_event
from governance.errors import AuthenticationFailed, PermissionDenied


def rotate_token(*, actor: Any, password: str) -> Token:
    """Replace the actor's API token with a new one (the old key stops working at once).

    A wrong password is recorded as "api_token.denied" (committed) and refused.
    """
    if not getattr(actor, "is_authenticated", False) or not actor.is_active:
        raise PermissionDenied("only an active, signed-in user may create an API token")
    if not password or not actor.check_password(password):
        with transaction.atomic():
            record_event("api_token.denied", actor=actor, obj=actor, object_type="User", reason="wrong password")
        raise AuthenticationFailed(f"wrong password for user {actor.get_username()!r} (the attempt was recorded)",
                                   field="password")
    with transaction.atomic():
        replaced = Token.objects.filter(user=actor).delete()[0] > 0
        token = Token.objects.create(user=actor)
        record_event("api_token.rotated" if replaced else "api_token.created", actor=actor, obj=actor,
                     object_type="User", after={"replaced": replaced})
    return token
