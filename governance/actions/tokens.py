"""API keys: created, rotated and revoked as audited actions; stored only as a SHA-256 hash and a prefix.

A key is shown once, when it is made. A person makes their own keys by re-entering the password; an
administrator makes keys only for service accounts (never for a person, who would then share a secret with
the administrator). A key may be narrowed to programs and to read-only bundle fetch, expires, records when it
was last used (to the minute), and stops at once when revoked or when its owner is deactivated. A key
authenticates requests; it never signs (signing re-authenticates with the password).

Keys in DRF's authtoken table (plain text at rest) are "legacy tokens": accepted while GOVERNANCE_LEGACY_TOKENS
is on, revoked by every revocation here, never created any more.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from governance.actions._common import create, require_text, save
from governance.actions.credentials import verify_password
from governance.audit import record_event
from governance.errors import IllegalTransition, InvalidInput, PermissionDenied
from governance.models import AccountState, ApiKey, Program, Role
from governance.permissions import has_role, is_member, require_role

KEY_PREFIX = "pgk_"
DEFAULT_KEY_NAME = "default"  # the key /users/me/token/ rotates


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _new_key() -> tuple[str, str]:
    """(public prefix, full key): `pgk_` + 8 hex characters, then 43 URL-safe characters of secret."""
    prefix = KEY_PREFIX + secrets.token_hex(4)
    return prefix, f"{prefix}_{secrets.token_urlsafe(32)}"


def key_ref(key: ApiKey) -> dict[str, Any]:
    """A key as audit JSON: everything but the secret."""
    return {"id": key.pk, "prefix": key.prefix, "name": key.name, "bundle_only": key.bundle_only,
            "programs": sorted(p.slug for p in key.programs.all()),
            "expires_at": key.expires_at.isoformat() if key.expires_at else None}


def live_keys() -> Any:
    """Every key neither revoked nor expired (a list of accounts prefetches them for all its users at once)."""
    return ApiKey.objects.filter(revoked_at__isnull=True).exclude(expires_at__lte=timezone.now())


def active_keys(user: Any) -> Any:
    return live_keys().filter(owner=user)


def user_keys(user: Any) -> list[ApiKey]:
    """Every key of the user, newest first, revoked and expired ones included (they are the key's history)."""
    return list(ApiKey.objects.filter(owner=user).prefetch_related("programs"))


def is_service_account(user: Any) -> bool:
    return AccountState.objects.filter(user_id=user.pk, service_account=True).exists()


# --- creating ----------------------------------------------------------------------------------------------


def create_api_key(owner: Any, *, actor: Any, name: str, password: str | None = None,
                   programs: Iterable[Program] = (), bundle_only: bool = False,
                   expires_in_days: int | None = None) -> tuple[ApiKey, str]:
    """A new key of `owner`; returns (the row, the key in clear, to show once).

    The owner makes their own keys with their password; administrators make keys for service accounts.
    """
    _check_issuer(owner, actor, password, doing="create an API key")
    name = require_text(name, field="name", max_length=100)
    programs = list(programs)
    hidden = sorted(p.slug for p in programs if not is_member(owner, p))
    if hidden:
        raise InvalidInput(f"user {owner.get_username()!r} may not see program(s) {', '.join(hidden)}",
                           field="programs")
    with transaction.atomic():
        return _issue(owner, actor=actor, name=name, programs=programs, bundle_only=bundle_only,
                      expires_at=_expiry(expires_in_days), action="api_key.created")


def rotate_token(*, actor: Any, password: str) -> tuple[ApiKey, str]:
    """Replace the actor's default key (and any legacy token) with a new key: the old ones stop at once.

    A wrong password is recorded as "api_token.denied" (committed) and refused.
    """
    _check_issuer(actor, actor, password, doing="create an API token")
    with transaction.atomic():
        replaced = _revoke(actor, actor=actor, keys=active_keys(actor).filter(name=DEFAULT_KEY_NAME)) > 0
        return _issue(actor, actor=actor, name=DEFAULT_KEY_NAME, programs=[], bundle_only=False,
                      expires_at=_expiry(None), action="api_token.rotated" if replaced else "api_token.created",
                      extra={"replaced": replaced})


def _issue(owner: Any, *, actor: Any, name: str, programs: list[Program], bundle_only: bool,
           expires_at: datetime | None, action: str, extra: dict[str, Any] | None = None) -> tuple[ApiKey, str]:
    prefix, key = _new_key()
    row = create(ApiKey, by=actor, owner=owner, name=name, prefix=prefix, key_hash=hash_key(key),
                 bundle_only=bundle_only, expires_at=expires_at, created_by=actor)
    row.programs.set(programs)
    record_event(action, actor=actor, obj=owner, object_type="User", after={**(extra or {}), "key": key_ref(row)})
    return row, key


def _check_issuer(owner: Any, actor: Any, password: str | None, *, doing: str) -> None:
    if not getattr(actor, "is_authenticated", False) or not actor.is_active:
        raise PermissionDenied(f"only an active, signed-in user may {doing}")
    if not owner.is_active:
        raise IllegalTransition(f"user {owner.get_username()!r} is deactivated")
    if owner.pk != actor.pk:
        require_role(actor, Role.ADMIN, doing=f"{doing} for another account")
        if not is_service_account(owner):
            raise PermissionDenied(f"user {owner.get_username()!r} is a person: only they create their API keys")
        return
    verify_password(actor, password, denied="api_token.denied")


def _expiry(days: int | None) -> datetime | None:
    """`days` from now; None = the default (GOVERNANCE_API_KEY_DEFAULT_DAYS; 0 there = no expiry). Never more
    than GOVERNANCE_API_KEY_MAX_DAYS (0 = no maximum)."""
    default = int(getattr(settings, "GOVERNANCE_API_KEY_DEFAULT_DAYS", 90))
    longest = int(getattr(settings, "GOVERNANCE_API_KEY_MAX_DAYS", 365))
    days = default if days is None else days
    if days < 0 or (days == 0 and longest) or (longest and days > longest):
        raise InvalidInput(f"expires_in_days must be between 1 and {longest}" if longest else
                           "expires_in_days must not be negative", field="expires_in_days")
    return timezone.now() + timedelta(days=days) if days else None


# --- revoking ----------------------------------------------------------------------------------------------


@transaction.atomic
def revoke_api_key(key: ApiKey, *, actor: Any, reason: str = "") -> ApiKey:
    """Revoke one key (its owner or an administrator); 409 when it is already revoked."""
    if getattr(actor, "pk", None) != key.owner_id:
        require_role(actor, Role.ADMIN, doing="revoke other users' API keys")
    key = ApiKey.objects.select_for_update(no_key=True).get(pk=key.pk)
    if key.revoked_at is not None:
        raise IllegalTransition(f"API key {key.prefix} is already revoked")
    _revoke(key.owner, actor=actor, keys=[key], legacy=False)
    record_event("api_key.revoked", actor=actor, obj=key.owner, object_type="User", reason=reason,
                 after={"key": key_ref(key)})
    return key


@transaction.atomic
def revoke_tokens(user: Any, *, actor: Any, reason: str = "") -> int:
    """Revoke every live key and legacy token of `user` (its owner or an administrator); 409 when none."""
    if getattr(actor, "pk", None) != user.pk and not has_role(actor, Role.ADMIN):
        require_role(actor, Role.ADMIN, doing="revoke other users' API tokens")
    revoked = revoke_all(user, actor=actor)
    if not revoked:
        raise IllegalTransition(f"user {user.get_username()!r} has no API token to revoke")
    record_event("api_token.revoked", actor=actor, obj=user, object_type="User", reason=reason,
                 after={"tokens_revoked": revoked})
    return revoked


def revoke_all(user: Any, *, actor: Any) -> int:
    """Revoke every live key and legacy token of `user` inside the caller's audited action; the count."""
    return _revoke(user, actor=actor, keys=active_keys(user))


def _revoke(user: Any, *, actor: Any, keys: Iterable[ApiKey], legacy: bool = True) -> int:
    now, count = timezone.now(), 0
    for key in keys:
        key.revoked_at, key.revoked_by = now, actor if getattr(actor, "pk", None) else None
        save(key, actor=actor, fields=["revoked_at", "revoked_by"])  # post_save clears the bundle fast path
        count += 1
    if legacy:
        count += Token.objects.filter(user=user).delete()[0]
    return count


# --- using -------------------------------------------------------------------------------------------------


def note_use(key: ApiKey) -> None:
    """Record the key's last use, at most once a minute (no history row, no signal: a use is not a change)."""
    now = timezone.now()
    resolution = timedelta(seconds=float(getattr(settings, "GOVERNANCE_API_KEY_LAST_USED_RESOLUTION", 60)))
    if key.last_used_at is None or now - key.last_used_at >= resolution:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
