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

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from governance.actions.exports import export_label
from governance.models import Program, ReleaseLabel

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


def label_bundle(program: Program, label: ReleaseLabel, *, actor: Any) -> CachedBundle:
    """The cached bundle of what `label` serves now, built (and audited) on the first fetch of this state."""
    key = label_cache_key(label)
    cached = cache.get(key)
    if cached is not None:
        return cached
    bundle = export_label(program, label.name, actor=actor, reason=BUILD_REASON)
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
