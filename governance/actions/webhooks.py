"""Webhook subscriptions (audited) and the delivery records the sender keeps.

Subscriptions are managed by the program's owner or an administrator. Deleting one deactivates it: its
deliveries are history and stay (no cascade delete). Deliveries are written by the system (signal receivers
and the sending task), one row per event and subscription, updated after every attempt.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from governance.actions._common import create, lock, save, user_ref
from governance.audit import record_event
from governance.errors import IllegalTransition, InvalidInput, PermissionDenied
from governance.models import Program, Role, WebhookDelivery, WebhookEvent, WebhookSubscription
from governance.permissions import has_role, require_member
from governance.webhook_checks import UnsafeDestination, new_secret, resolve_destination, secret_problem

LEASE_SECONDS = 120  # a claimed delivery is not handed out again for this long (longer than one attempt)


def _require_manager(program: Program, actor: Any, doing: str) -> None:
    require_member(actor, program)
    if program.owner_id != getattr(actor, "pk", None) and not has_role(actor, Role.ADMIN):
        raise PermissionDenied(f"only the owner of {program.slug} or an administrator may {doing}")


def subscription_state(subscription: WebhookSubscription) -> dict[str, Any]:
    """The audited picture (never the secret)."""
    return {"url": subscription.url, "events": subscription.events, "active": subscription.active}


def _validate_events(events: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(events or ()))
    unknown = [e for e in chosen if e not in WebhookEvent.values]
    if not chosen or unknown:
        raise InvalidInput(f"events must be a non-empty subset of {', '.join(WebhookEvent.values)}"
                           + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else ""), field="events")
    return chosen


@transaction.atomic
def create_subscription(program: Program, *, actor: Any, url: str, events: Iterable[str],
                        secret: str | None = None, reason: str = "") -> WebhookSubscription:
    """Subscribe `url` to `events` of `program`. The secret (generated when None) signs every delivery.

    The URL must be https (unless allowed) and resolve only to public addresses (unless allowed): the server
    must not be made to POST into its own network (governance.webhook_checks.resolve_destination).
    """
    _require_manager(program, actor, "manage webhooks")
    url = (url or "").strip()
    if len(url) > 500:
        raise InvalidInput("url must have at most 500 characters", field="url")
    try:
        resolve_destination(url)
    except UnsafeDestination as exc:
        raise InvalidInput(str(exc), field="url") from None
    if secret is not None:
        problem = None if 16 <= len(secret) <= 128 else "secret must have 16 to 128 characters"
        if problem or secret_problem(secret):
            raise InvalidInput(problem or secret_problem(secret) or "", field="secret")
    subscription = create(WebhookSubscription, by=actor, program=program, url=url, events=_validate_events(events),
                          secret=secret or new_secret(), active=True, created_by=actor)
    record_event("webhook.created", actor=actor, obj=subscription, program=program,
                 after={**subscription_state(subscription), "created_by": user_ref(actor)}, reason=reason)
    return subscription


@transaction.atomic
def delete_subscription(subscription: WebhookSubscription, *, actor: Any, reason: str = "") -> WebhookSubscription:
    """Stop sending to the subscription (it is deactivated; its deliveries are kept as history)."""
    subscription = lock(subscription)
    _require_manager(subscription.program, actor, "manage webhooks")
    if not subscription.active:
        raise IllegalTransition(f"webhook {subscription.pk} is already deleted")
    before = subscription_state(subscription)
    subscription.active = False
    save(subscription, actor=actor, fields=["active"])
    record_event("webhook.deleted", actor=actor, obj=subscription, program=subscription.program, before=before,
                 after=subscription_state(subscription), reason=reason)
    return subscription


# --- deliveries (system writes, no acting user) -------------------------------------------------------------


@transaction.atomic
def queue_deliveries(program: Program, event: str, payload: dict[str, Any]) -> list[WebhookDelivery]:
    """One delivery, due now, per active subscription of `program` that wants `event`."""
    subscriptions = [s for s in WebhookSubscription.objects.filter(program=program, active=True)
                     if event in (s.events or [])]
    now = timezone.now()
    return [WebhookDelivery.objects.create(subscription=s, event=event, payload=payload, next_attempt_at=now)
            for s in subscriptions]


def claim_delivery(delivery_id: int) -> WebhookDelivery | None:
    """Take a due delivery for one attempt: its next_attempt_at moves LEASE_SECONDS ahead in one UPDATE, so a
    second sender (a duplicate task, the due-deliveries job) finds it not due. None when it is not due."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(pk=delivery_id, delivered_at__isnull=True,
                                             next_attempt_at__lte=now).update(
        next_attempt_at=now + dt.timedelta(seconds=LEASE_SECONDS))
    if not claimed:
        return None
    return WebhookDelivery.objects.select_related("subscription").get(pk=delivery_id)


def due_deliveries(limit: int = 500) -> list[int]:
    """Ids of deliveries whose next attempt is due (oldest first)."""
    return list(WebhookDelivery.objects.filter(delivered_at__isnull=True, next_attempt_at__lte=timezone.now())
                .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])


def record_attempt(delivery: WebhookDelivery, *, status: int | None, error: str = "", delivered: bool,
                   retry_in: float | None = None) -> WebhookDelivery:
    """Count one attempt and keep its outcome (the last status and error; delivered_at once it succeeded) and
    when the next attempt is due (None: no further attempt)."""
    now = timezone.now()
    values: dict[str, Any] = {"attempts": F("attempts") + 1, "response_status": status, "error": error[:2000],
                              "next_attempt_at": None if retry_in is None else now + dt.timedelta(seconds=retry_in)}
    if delivered:
        values["delivered_at"] = now
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**values)
    delivery.refresh_from_db()
    return delivery
