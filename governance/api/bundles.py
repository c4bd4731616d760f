"""Production fetch of a release label's signed bundle, built and signed once per label state.

Services poll `GET /api/v1/programs/<slug>/releases/<label>/bundle`. Signing a bundle per request would write
an Export row and an audit event per poll, so the signed bundle is cached (Django's cache) under a key that
names everything the bundle depends on: program, label, the version served, the kill switch and the signing
key. A release, rollback, fallback pin or kill switch changes what the label serves, hence the key: the next
fetch misses, builds a new bundle through `export_label` (one Export row and one `version.exported` audit
event, with the fetching service as actor) and caches it. No invalidation is needed for correctness: stale
keys are simply never asked for again and expire.

With the default per-process LocMemCache, each server process builds its own copy once per label state (so
one export event per process and label move); a shared cache (CACHE_BACKEND=...redis...) makes it one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone
from rest_framework.authtoken.models import Token

from governance.actions import exports as export_actions
from governance.actions import tokens
from governance.models import ApiKey, Program, ProgramMembership, PromptVersion, ReleaseLabel, Role

CACHE_PREFIX = "governance:bundle:v1"
BUILD_REASON = "signed bundle built for production fetches of the label (served from cache until the label moves)"


@dataclass(frozen=True)
class CachedBundle:
    body: bytes  # the bundle as compact, key-sorted JSON
    etag: str  # strong validator: quoted SHA-256 of body


def _key_generation() -> str:
    """Changes when the signing key does (a new key must not keep serving bundles signed by the old one)."""
    if getattr(settings, "GOVERNANCE_SIGNING_KEY_PEM", ""):
        return hashlib.sha256(settings.GOVERNANCE_SIGNING_KEY_PEM.encode("utf-8")).hexdigest()[:16]
    try:
        return str(os.stat(settings.GOVERNANCE_SIGNING_KEY_PATH).st_mtime_ns)
    except OSError:
        return "none"


def cache_key(program_id: int, label: str, version_number: int, kill_switch: bool) -> str:
    return f"{CACHE_PREFIX}:{program_id}:{label}:{version_number}:{int(kill_switch)}:{_key_generation()}"


def label_cache_key(label: ReleaseLabel) -> str:
    return cache_key(label.program_id, label.name, label.serving_version.number, label.kill_switch)


def encode(bundle: dict[str, Any]) -> CachedBundle:
    body = json.dumps(bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return CachedBundle(body=body, etag=f'"{hashlib.sha256(body).hexdigest()}"')


@dataclass(frozen=True)
class FetchState:
    """What one fetch needs to know, read in one query: who asks, and what the label serves now."""

    program_id: int
    label: str
    serving_number: int
    kill_switch: bool
    user_id: int


def _rights_sql(principal: str) -> str:
    """The fetch query over a principal (`FROM ... u ...` naming the user u and the key's conditions)."""
    user_model = get_user_model()
    members = Program.members.through._meta.db_table
    groups = user_model.groups.through._meta.db_table
    return f"""
        SELECT p.id, l.name, l.kill_switch, v.number, fv.number, u.id,
               (p.owner_id = u.id
                OR u.is_superuser
                OR EXISTS (SELECT 1 FROM {members} m WHERE m.program_id = p.id AND m.user_id = u.id)
                OR EXISTS (SELECT 1 FROM {groups} ug JOIN auth_group g ON g.id = ug.group_id
                           WHERE ug.user_id = u.id AND g.name IN (%s, %s))) AS allowed,
               {principal}"""


@functools.lru_cache(maxsize=1)
def _key_sql() -> str:
    """An API key (by hash): live (not revoked, not expired), its owner active, the program within its scope.
    Also the key's id and whether its last-use time is older than the resolution (then it is written)."""
    key_field = ApiKey.programs.field
    scope, key_column, program_column = key_field.m2m_db_table(), key_field.m2m_column_name(), \
        key_field.m2m_reverse_name()
    return _rights_sql(f"""k.id, (k.last_used_at IS NULL OR k.last_used_at < %s) AS stale
        FROM {ApiKey._meta.db_table} k
        JOIN {get_user_model()._meta.db_table} u ON u.id = k.owner_id
        {_LABEL_JOINS}
        WHERE k.key_hash = %s AND u.is_active AND k.revoked_at IS NULL
          AND (k.expires_at IS NULL OR k.expires_at > %s)
          AND (NOT EXISTS (SELECT 1 FROM {scope} s WHERE s.{key_column} = k.id)
               OR EXISTS (SELECT 1 FROM {scope} s WHERE s.{key_column} = k.id AND s.{program_column} = p.id))""")


@functools.lru_cache(maxsize=1)
def _legacy_sql() -> str:
    """A key of DRF's authtoken table (plain text), while GOVERNANCE_LEGACY_TOKENS allows them."""
    return _rights_sql(f"""NULL, 0
        FROM {Token._meta.db_table} t
        JOIN {get_user_model()._meta.db_table} u ON u.id = t.user_id
        {_LABEL_JOINS}
        WHERE t.key = %s AND u.is_active""")


_LABEL_JOINS = f"""JOIN {Program._meta.db_table} p ON p.slug = %s
        JOIN {ReleaseLabel._meta.db_table} l ON l.program_id = p.id AND l.name = %s
        JOIN {PromptVersion._meta.db_table} v ON v.id = l.version_id
        LEFT JOIN {PromptVersion._meta.db_table} fv ON fv.id = l.fallback_version_id"""


def fetch_state(token_key: str, slug: str, label: str) -> FetchState | None:
    """The hot path of a service's fetch, in one indexed query: the key's active owner within the key's scope,
    the label, and whether the owner may see the program (the rule of governance.permissions.is_member:
    a membership on that program, with or without roles, the owner, an admin or a global auditor).

    None when anything is missing, expired, revoked or not allowed; the caller then lets the regular view
    explain why (401 for the key, 403 for its scope, 404 for the label).
    """
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    if token_key.startswith(tokens.KEY_PREFIX):
        stale_before = now - timedelta(seconds=float(getattr(settings, "GOVERNANCE_API_KEY_LAST_USED_RESOLUTION", 60)))
        sql, params = _key_sql(), [adapt(stale_before), slug, label, tokens.hash_key(token_key), adapt(now)]
    elif getattr(settings, "GOVERNANCE_LEGACY_TOKENS", True):
        sql, params = _legacy_sql(), [slug, label, token_key]
    else:
        return None
    with connection.cursor() as cursor:
        cursor.execute(sql, [Role.ADMIN.value, Role.AUDITOR.value, *params])
        row = cursor.fetchone()
    if row is None or not row[6]:
        return None
    program_id, name, kill_switch, number, fallback_number, user_id, _, key_id, stale = row
    if key_id is not None and stale:
        ApiKey.objects.filter(pk=key_id).update(last_used_at=now)  # no signal: a use is not a change
    serving = fallback_number if kill_switch and fallback_number is not None else number
    return FetchState(program_id, name, serving, bool(kill_switch), user_id)


# Bundles this process has already taken from the cache, by cache key. A key names the exact label state, so an
# entry is never stale; the bound keeps memory flat however many labels and moves a process sees.
_memo: dict[str, CachedBundle] = {}
_MEMO_SIZE = 256


def forget() -> None:
    """Drop this process's memos (tests, and operators clearing the cache by hand)."""
    _memo.clear()
    _states.clear()


# (token, program slug, label) -> (expires at, state): at most GOVERNANCE_BUNDLE_STATE_TTL seconds old, so the
# hot path of a polling service usually touches no database at all. Changes made in this process (a release,
# rollback, kill switch, membership, role or token change) clear it at once through the model signals below;
# other processes see them within the TTL. Only grants are kept: refusals always take the full path.
_states: dict[tuple[str, str, str], tuple[float, FetchState]] = {}
_STATES_SIZE = 4096


def current_state(token_key: str, slug: str, label: str) -> FetchState | None:
    """`fetch_state`, answered from the short-lived per-process memo when possible."""
    ttl = float(getattr(settings, "GOVERNANCE_BUNDLE_STATE_TTL", 0) or 0)
    key = (token_key, slug, label)
    now = time.monotonic()
    if ttl > 0:
        hit = _states.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
    state = fetch_state(token_key, slug, label)
    if state is not None and ttl > 0:
        if len(_states) >= _STATES_SIZE:
            _states.clear()
        _states[key] = (now + ttl, state)
    return state


def _forget_states(**kwargs: Any) -> None:
    _states.clear()


for _model in (ReleaseLabel, Token, ApiKey, ProgramMembership, get_user_model()):
    post_save.connect(_forget_states, sender=_model, dispatch_uid=f"bundle-states-save-{_model.__name__}")
    post_delete.connect(_forget_states, sender=_model, dispatch_uid=f"bundle-states-delete-{_model.__name__}")
for _through in (Program.members.through, get_user_model().groups.through, ApiKey.programs.through):
    m2m_changed.connect(_forget_states, sender=_through, dispatch_uid=f"bundle-states-m2m-{_through.__name__}")


def state_bundle(state: FetchState) -> CachedBundle:
    """The cached bundle for a fetch state; on a miss, loads the rows and builds it (audited) as that user."""
    key = cache_key(state.program_id, state.label, state.serving_number, state.kill_switch)
    cached = _memo.get(key) or cache.get(key)
    if cached is not None:
        if len(_memo) >= _MEMO_SIZE:
            _memo.clear()
        _memo[key] = cached
        return cached
    label = ReleaseLabel.objects.select_related("program", "version", "fallback_version").get(
        program_id=state.program_id, name=state.label)
    return label_bundle(label.program, label, actor=get_user_model().objects.get(pk=state.user_id))


def label_bundle(program: Program, label: ReleaseLabel, *, actor: Any) -> CachedBundle:
    """The cached bundle of what `label` serves now, built (and audited) on the first fetch of this state."""
    key = label_cache_key(label)
    cached = cache.get(key)
    if cached is not None:
        return cached
    bundle = export_actions.export_label(program, label.name, actor=actor, reason=BUILD_REASON)
    built = encode(bundle)
    # The label may have moved between reading it and exporting: file the bundle under what it really is.
    release = bundle["manifest"].get("release") or {}
    real_key = cache_key(program.pk, label.name, bundle["manifest"]["version"]["number"],
                         bool(release.get("kill_switch")))
    cache.set(real_key, built, timeout=settings.GOVERNANCE_BUNDLE_CACHE_SECONDS)
    return built


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 If-None-Match: `*` or any listed tag equal to ours under weak comparison."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in if_none_match.split(","))
