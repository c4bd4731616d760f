"""Outgoing webhooks: Standard Webhooks-signed POSTs to subscribers when the workflow moves.

Events (WebhookEvent): change request opened, approved, rejected; version released; release rolled back;
drift alert. The domain signals (governance.signals) are sent on commit, so a rolled-back change never
notifies anyone. The receivers here record one WebhookDelivery per interested subscription, due at once, and
hand its id to the sender.

Each request follows the Standard Webhooks scheme (https://www.standardwebhooks.com/, signed with the
`standardwebhooks` package)::

    Content-Type: application/json
    webhook-id: gov-42                 (the same on every retry: receivers de-duplicate with it)
    webhook-timestamp: 1767225600      (Unix seconds of this attempt)
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>" with the subscription's secret>
    X-Event: change_request.approved

Receivers check it with `verify_delivery` (or `standardwebhooks.Webhook(secret).verify`), which refuses a
timestamp outside the replay window, so a captured request cannot be replayed later.

Destinations: a URL whose host resolves to a loopback, private, link-local (cloud metadata), multicast or
otherwise non-public address is refused when subscribing and again at every delivery (DNS may change in
between); the connection goes to the address that was checked, and redirects are not followed. Plain http
needs DEBUG or GOVERNANCE_WEBHOOK_ALLOW_HTTP; GOVERNANCE_WEBHOOK_ALLOW_PRIVATE allows internal receivers.

Retries never sleep in a worker: a failed attempt stores `next_attempt_at` (exponential backoff) and frees its
thread. With a broker, the Celery task `governance.deliver_webhook` makes one attempt and Celery schedules the
retry (countdown); without one, a small thread pool makes attempts and one scheduler thread hands due retries
back to it. The beat job `governance.deliver_due_webhooks` (and the scheduler, every minute) sends whatever is
due and not in flight, e.g. after a restart. An attempt first claims its delivery (a lease on
`next_attempt_at`), so two senders never POST the same delivery at once.
"""

from __future__ import annotations

import base64
import datetime as dt
import heapq
import http.client
import json
import logging
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping, MutableSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.dispatch import receiver
from standardwebhooks.webhooks import Webhook

from governance import signals
from governance.actions import webhooks as webhook_actions
from governance.jobs import send_task
from governance.models import WebhookDelivery, WebhookEvent
from governance.webhook_checks import (  # noqa: F401  (re-exported: tests and receivers' code use them from here)
    SECRET_PREFIX,
    UnsafeDestination,
    check_url,
    new_secret,
    resolve_destination,
    secret_problem,
)

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BACKOFF_SECONDS = (10, 30, 120, 600, 1800)  # before attempts 2..6: about 43 minutes in all
TIMEOUT_SECONDS = 5.0
REPLAY_WINDOW_SECONDS = 300
USER_AGENT = "prompt-governance-webhooks/2"


# --- signing (Standard Webhooks) ----------------------------------------------------------------------------


def message_id(delivery_id: int) -> str:
    return f"gov-{delivery_id}"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature value: ``v1,`` + base64 HMAC-SHA256 of ``<id>.<timestamp>.<body>``."""
    when = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return Webhook(secret).sign(msg_id=msg_id, timestamp=when, data=body.decode("utf-8"))


def signed_headers(secret: str, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body)}


class WebhookVerificationError(Exception):
    """A delivery that is not authentic, not fresh, or seen before."""


def verify_delivery(secret: str, headers: Mapping[str, str], body: bytes, *,
                    tolerance: float = REPLAY_WINDOW_SECONDS, now: float | None = None,
                    seen_ids: MutableSet[str] | None = None) -> Any:
    """For receivers: check a delivery's signature and freshness and return its parsed JSON body.

    Refuses a timestamp more than `tolerance` seconds from `now` (replay protection: a captured request goes
    stale), a signature that does not match, and, with `seen_ids` (the receiver's memory of webhook-ids, kept
    at least `tolerance` seconds), a message id delivered before.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    msg_id, stamp, signatures = (lowered.get(name, "") for name in
                                 ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp {stamp[:40]!r} is not Unix seconds") from None
    skew = (time.time() if now is None else now) - timestamp
    if abs(skew) > tolerance:
        raise WebhookVerificationError(f"webhook-timestamp is {skew:.0f} s away from now; the replay window is "
                                       f"{tolerance:.0f} s")
    expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
    offered = [part.split(",", 1)[1] for part in signatures.split() if part.startswith("v1,")]
    if not any(secrets.compare_digest(expected, candidate) for candidate in offered):
        raise WebhookVerificationError("no matching signature")
    if seen_ids is not None:
        if msg_id in seen_ids:
            raise WebhookVerificationError(f"webhook-id {msg_id} was delivered before (replay)")
        seen_ids.add(msg_id)
    return json.loads(body)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever DNS answers now (no rebinding in between)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # the certificate names the host


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST to a checked address of `url`; the response status (redirects are answers, not followed)."""
    parts, addresses = resolve_destination(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = kind(parts.hostname, port, addresses[0], TIMEOUT_SECONDS)
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(65536)  # a little of the answer, never an unbounded one
        return response.status
    finally:
        connection.close()


# --- attempts -----------------------------------------------------------------------------------------------


def backoff(attempts_made: int) -> float:
    """Seconds to wait before the next attempt, after `attempts_made` failed ones."""
    steps = tuple(getattr(settings, "GOVERNANCE_WEBHOOK_BACKOFF", BACKOFF_SECONDS))
    return float(steps[min(attempts_made, len(steps)) - 1])


def body_of(delivery: WebhookDelivery) -> bytes:
    document = {"type": delivery.event, "event": delivery.event, "delivery_id": delivery.pk,
                "timestamp": delivery.created_at.isoformat(), "created_at": delivery.created_at.isoformat(),
                "data": delivery.payload}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    retry_in: float | None  # seconds until the next attempt; None when done (delivered or out of attempts)


def attempt(delivery_id: int) -> Outcome:
    """One POST of the delivery if it is due and nobody else has it; records the attempt and schedules the next
    one (network errors, 408, 429 and 5xx are retried; other answers and unsafe destinations are final)."""
    delivery = webhook_actions.claim_delivery(delivery_id)
    if delivery is None:  # delivered, given up, not due yet, or claimed by another sender
        done = WebhookDelivery.objects.filter(pk=delivery_id, delivered_at__isnull=False).exists()
        return Outcome(delivered=done, retry_in=None)
    subscription = delivery.subscription
    if not subscription.active:
        webhook_actions.record_attempt(delivery, status=None, error="subscription deleted; not sent", delivered=False)
        return Outcome(delivered=False, retry_in=None)
    status, error, retryable = _send(delivery)
    delivered = status is not None and 200 <= status < 300
    retry_in = backoff(delivery.attempts + 1) if retryable and delivery.attempts + 1 < MAX_ATTEMPTS else None
    delivery = webhook_actions.record_attempt(delivery, status=status, error=error, delivered=delivered,
                                              retry_in=retry_in)
    if retry_in is not None:
        logger.warning("webhook delivery %s to %s failed (%s); retry %d/%d in %.0f s", delivery.pk,
                       subscription.url, error or status, delivery.attempts, MAX_ATTEMPTS - 1, retry_in)
    elif not delivered:
        logger.error("webhook delivery %s to %s given up after %d attempt(s): %s", delivery.pk, subscription.url,
                     delivery.attempts, error or status)
    return Outcome(delivered=delivered, retry_in=retry_in)


def _send(delivery: WebhookDelivery) -> tuple[int | None, str, bool]:
    """(status, error, retryable) of one POST."""
    body = body_of(delivery)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Event": delivery.event,
               **signed_headers(delivery.subscription.secret, message_id(delivery.pk), body)}
    try:
        status = post(delivery.subscription.url, body, headers)
    except UnsafeDestination as exc:
        return None, f"refused: {exc}", False
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}", True
    if 200 <= status < 300:
        return status, "", False
    return status, f"HTTP {status}", status in (408, 429) or status >= 500


# --- dispatch -----------------------------------------------------------------------------------------------


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
        send_task("governance.deliver_webhook", delivery_id)
    elif mode == "inline":
        attempt(delivery_id)
    else:
        _local_sender().submit(delivery_id)


def deliver_due(limit: int = 500) -> list[int]:
    """Send every delivery that is due and not in flight (beat, the local scheduler, after a restart)."""
    ids = webhook_actions.due_deliveries(limit)
    for delivery_id in ids:
        send(delivery_id)
    return ids


class LocalSender:
    """The embedded default's sender: a thread pool for attempts and one scheduler thread for retries.

    A pool thread makes one attempt and returns; a retry goes onto the scheduler's heap with its due time, so a
    dead subscriber costs one bounded attempt per backoff step and never holds a thread while it waits.
    """

    def __init__(self, workers: int, poll_seconds: float = 60.0) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhooks")
        self._due: list[tuple[float, int]] = []
        self._wakeup = threading.Condition()
        self._poll_seconds = poll_seconds
        threading.Thread(target=self._schedule_loop, name="webhook-scheduler", daemon=True).start()

    def submit(self, delivery_id: int) -> None:
        self._pool.submit(self._attempt, delivery_id)

    def later(self, delivery_id: int, delay: float) -> None:
        with self._wakeup:
            heapq.heappush(self._due, (time.monotonic() + delay, delivery_id))
            self._wakeup.notify()

    def _attempt(self, delivery_id: int) -> None:
        try:
            outcome = attempt(delivery_id)
            if outcome.retry_in is not None:
                self.later(delivery_id, outcome.retry_in)
        except Exception:  # a pool thread has nobody to raise to
            logger.exception("webhook delivery %s failed unexpectedly", delivery_id)
        finally:
            close_old_connections()

    def _schedule_loop(self) -> None:
        next_poll = time.monotonic() + self._poll_seconds
        while True:
            with self._wakeup:
                now = time.monotonic()
                wait = min([next_poll] + [due for due, _ in self._due[:1]]) - now
                if wait > 0:
                    self._wakeup.wait(wait)
                now = time.monotonic()
                ready = []
                while self._due and self._due[0][0] <= now:
                    ready.append(heapq.heappop(self._due)[1])
            for delivery_id in ready:
                self.submit(delivery_id)
            if now >= next_poll:
                next_poll = now + self._poll_seconds
                self._pool.submit(self._poll)

    def _poll(self) -> None:
        try:
            deliver_due()
        except Exception:
            logger.exception("could not look for due webhook deliveries")
        finally:
            close_old_connections()


_sender: LocalSender | None = None
_sender_lock = threading.Lock()


def _local_sender() -> LocalSender:
    global _sender
    with _sender_lock:
        if _sender is None:
            _sender = LocalSender(int(getattr(settings, "GOVERNANCE_WEBHOOK_WORKERS", 4)))
        return _sender


def notify(program: Any, event: str, data: dict[str, Any]) -> list[int]:
    """Record deliveries of `event` for the program's subscribers and send them once the transaction commits."""
    ids = [delivery.pk for delivery in webhook_actions.queue_deliveries(program, event, data)]
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
