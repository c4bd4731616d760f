"""Outgoing webhooks: HMAC-SHA256-signed POSTs to subscribers when the workflow moves.

Events (WebhookEvent): change request opened, approved, rejected; version released; release rolled back;
drift alert. The domain signals (governance.signals) are sent on commit, so a rolled-back change never
notifies anyone. The receivers here record one WebhookDelivery per interested subscription and hand its id to
the sender:

- with a broker, the Celery task `governance.webhook_tasks.deliver_webhook` (one attempt per run, retried
  with exponential backoff by Celery);
- without one (the embedded default), a small background thread pool doing the same attempts and sleeps, so
  a slow subscriber never holds up the request that approved or released something.

Each request carries::

    Content-Type: application/json
    X-Event: change_request.approved
    X-Delivery-Id: 42            (the same on every retry: receivers de-duplicate with it)
    X-Signature: sha256=<hex HMAC-SHA256 of the raw body with the subscription's secret>

Every attempt increments `attempts` on the delivery and stores the response status or the error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.dispatch import receiver

from governance import signals
from governance.models import WebhookDelivery, WebhookEvent

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BACKOFF_SECONDS = (10, 30, 120, 600, 1800)  # before attempts 2..6: about 43 minutes in all
TIMEOUT_SECONDS = 5.0
USER_AGENT = "prompt-governance-webhooks/1"


def sign(secret: str, body: bytes) -> str:
    """The X-Signature value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """For receivers (and tests): constant-time check of an X-Signature header."""
    return hmac.compare_digest(sign(secret, body), header or "")


def backoff(attempts_made: int) -> float:
    """Seconds to wait before the next attempt, after `attempts_made` failed ones."""
    return float(BACKOFF_SECONDS[min(attempts_made, len(BACKOFF_SECONDS)) - 1])


def body_of(delivery: WebhookDelivery) -> bytes:
    document = {"event": delivery.event, "delivery_id": delivery.pk, "created_at": delivery.created_at.isoformat(),
                "data": delivery.payload}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    retry_in: float | None  # seconds until the next attempt; None when done (delivered or out of attempts)


def attempt(delivery_id: int) -> Outcome:
    """One POST of the delivery; records the attempt. Retries on network errors, 408, 429 and 5xx."""
    from governance.actions.webhooks import record_attempt

    delivery = WebhookDelivery.objects.select_related("subscription").filter(pk=delivery_id).first()
    if delivery is None or delivery.delivered_at is not None:
        return Outcome(delivered=delivery is not None, retry_in=None)
    subscription = delivery.subscription
    if not subscription.active:
        record_attempt(delivery, status=None, error="subscription deleted; not sent", delivered=False)
        return Outcome(delivered=False, retry_in=None)
    body = body_of(delivery)
    request = urllib.request.Request(subscription.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Event": delivery.event,
        "X-Delivery-Id": str(delivery.pk), "X-Signature": sign(subscription.secret, body)})
    status, error = None, ""
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status, error = exc.code, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    delivered = status is not None and 200 <= status < 300
    delivery = record_attempt(delivery, status=status, error=error, delivered=delivered)
    retryable = not delivered and (status is None or status in (408, 429) or status >= 500)
    if retryable and delivery.attempts < MAX_ATTEMPTS:
        logger.warning("webhook delivery %s to %s failed (%s); retry %d/%d", delivery.pk, subscription.url,
                       error or status, delivery.attempts, MAX_ATTEMPTS - 1)
        return Outcome(delivered=False, retry_in=backoff(delivery.attempts))
    if not delivered:
        logger.error("webhook delivery %s to %s given up after %d attempt(s): %s", delivery.pk, subscription.url,
                     delivery.attempts, error or status)
    return Outcome(delivered=delivered, retry_in=None)


# --- dispatch -----------------------------------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def dispatch_mode() -> str:
    """"celery" with a broker, "thread" without; settings.GOVERNANCE_WEBHOOK_DISPATCH overrides ("inline"
    makes one attempt in the caller, for tests)."""
    configured = getattr(settings, "GOVERNANCE_WEBHOOK_DISPATCH", "")
    if configured:
        return configured
    return "thread" if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False) else "celery"


def send(delivery_id: int) -> None:
    mode = dispatch_mode()
    if mode == "celery":
        from governance.webhook_tasks import deliver_webhook
        deliver_webhook.delay(delivery_id)
    elif mode == "inline":
        attempt(delivery_id)
    else:
        _thread_pool().submit(_deliver_in_thread, delivery_id)


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhooks")
        return _pool


def _deliver_in_thread(delivery_id: int) -> None:
    try:
        while True:
            outcome = attempt(delivery_id)
            if outcome.retry_in is None:
                return
            time.sleep(outcome.retry_in)
    except Exception:  # a background thread has nobody to raise to
        logger.exception("webhook delivery %s failed unexpectedly", delivery_id)
    finally:
        close_old_connections()


def notify(program: Any, event: str, data: dict[str, Any]) -> list[int]:
    """Record deliveries of `event` for the program's subscribers and send them once the transaction commits."""
    from governance.actions.webhooks import queue_deliveries

    ids = [delivery.pk for delivery in queue_deliveries(program, event, data)]
    for delivery_id in ids:
        transaction.on_commit(lambda delivery_id=delivery_id: send(delivery_id))
    return ids


# --- signal receivers ---------------------------------------------------------------------------------------


def _user(user: Any) -> dict[str, Any] | None:
    if user is None or not getattr(user, "pk", None):
        return None
    return {"id": user.pk, "username": user.get_username()}


def change_request_data(cr: Any, actor: Any) -> dict[str, Any]:
    return {"program": cr.program.slug, "change_request": cr.pk, "title": cr.title, "status": cr.status,
            "version": cr.version.number, "version_id": cr.version_id, "content_hash": cr.version.content_hash,
            "ticket_ref": cr.ticket_ref, "impact": cr.impact, "actor": _user(actor)}


def release_data(release: Any, actor: Any) -> dict[str, Any]:
    return {"program": release.program.slug, "release": release.pk, "label": release.label,
            "action": release.action, "version": release.version.number, "version_id": release.version_id,
            "content_hash": release.version.content_hash,
            "previous_version": release.previous_version.number if release.previous_version_id else None,
            "reason": release.reason, "actor": _user(actor)}


def drift_data(alert: Any) -> dict[str, Any]:
    return {"program": alert.program.slug, "drift_alert": alert.pk, "version": alert.version.number,
            "dataset": alert.dataset_id, "baseline_score": alert.baseline_score,
            "current_score": alert.current_score, "threshold": alert.threshold, "drop_points": alert.drop_points}


def _safely(event: str, build: Any) -> None:
    """Receivers never break the action that sent the signal (it has committed already)."""
    try:
        with transaction.atomic():
            program, data = build()
            notify(program, event, data)
    except Exception:
        logger.exception("could not queue webhook deliveries for %s", event)


@receiver(signals.change_request_opened, dispatch_uid="webhooks.change_request_opened")
def _on_opened(sender: Any, instance: Any, actor: Any = None, **kwargs: Any) -> None:
    _safely(WebhookEvent.CHANGE_REQUEST_OPENED, lambda: (
        instance.program, {**change_request_data(instance, actor), "resubmitted": bool(kwargs.get("resubmitted"))}))


@receiver(signals.change_request_approved, dispatch_uid="webhooks.change_request_approved")
def _on_approved(sender: Any, instance: Any, actor: Any = None, **kwargs: Any) -> None:
    _safely(WebhookEvent.CHANGE_REQUEST_APPROVED, lambda: (instance.program, change_request_data(instance, actor)))


@receiver(signals.change_request_rejected, dispatch_uid="webhooks.change_request_rejected")
def _on_rejected(sender: Any, instance: Any, actor: Any = None, **kwargs: Any) -> None:
    _safely(WebhookEvent.CHANGE_REQUEST_REJECTED, lambda: (instance.program, change_request_data(instance, actor)))


@receiver(signals.version_released, dispatch_uid="webhooks.version_released")
def _on_released(sender: Any, instance: Any, actor: Any = None, **kwargs: Any) -> None:
    _safely(WebhookEvent.RELEASED, lambda: (instance.program, release_data(instance, actor)))


@receiver(signals.release_rolled_back, dispatch_uid="webhooks.release_rolled_back")
def _on_rolled_back(sender: Any, instance: Any, actor: Any = None, **kwargs: Any) -> None:
    _safely(WebhookEvent.ROLLED_BACK, lambda: (instance.program, release_data(instance, actor)))


@receiver(signals.drift_alert_raised, dispatch_uid="webhooks.drift_alert_raised")
def _on_drift(sender: Any, instance: Any, **kwargs: Any) -> None:
    _safely(WebhookEvent.DRIFT_ALERT, lambda: (instance.program, drift_data(instance)))
