"""Liveness and readiness for load balancers and orchestrators.

`/healthz` answers 200 while the process serves requests (it touches nothing else, so a slow database never
gets a web node killed). `/readyz` answers 200 only when this node can do its work: the database answers, the
broker (when one is configured) accepts a connection, and the export signing key and the audit key load (without
them releases, exports and every audited write fail). Each check is reported by name; a failed check gives 503
and the server log says why. No authentication: the bodies name checks and key fingerprints, never secrets or
paths.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from governance import audit, signing

logger = logging.getLogger(__name__)
BROKER_TIMEOUT_SECONDS = 2.0


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {name: _run(check) for name, check in READINESS_CHECKS.items()}
    ready = all(result["ok"] for result in checks.values())
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return connection.vendor


def check_broker() -> str:
    if not settings.CELERY_BROKER_URL:
        return "none configured: jobs run in this process"
    from kombu import Connection  # the broker client loads only where a broker is configured

    with Connection(settings.CELERY_BROKER_URL, connect_timeout=BROKER_TIMEOUT_SECONDS) as broker:
        broker.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        return broker.transport.driver_type


def check_signing_key() -> str:
    signing.signing_key()
    return f"ed25519 {signing.public_key_fingerprint()}"


def check_audit_key() -> str:
    key = audit.configured_audit_key()
    if key is not None:
        return f"key {key.key_id}"
    if settings.GOVERNANCE_AUDIT_KEY_AUTOCREATE:
        return "created by the first audited write (GOVERNANCE_AUDIT_KEY_AUTOCREATE)"
    raise audit.AuditKeyMissing("no audit key is configured")


READINESS_CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "broker": check_broker,
    "signing_key": check_signing_key,
    "audit_key": check_audit_key,
}


def _run(check: Callable[[], str]) -> dict[str, object]:
    started = time.perf_counter()
    try:
        detail, ok = check(), True
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"; the reason goes to the log
        logger.warning("readiness check %s failed: %s", check.__name__, error)
        detail, ok = f"failed ({type(error).__name__}); the server log says why", False
    return {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - started) * 1000, 1)}
