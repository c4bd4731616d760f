"""Webhook subscriptions (audited) and the delivery records the sender keeps.

Subscriptions are managed by the program's owner or an administrator. Deleting one deactivates it: its
deliveries are history and stay (no cascade delete). Deliveries are written by the system (signal receivers
and the sending task), one row per event and subscription, updated after every attempt.
"""

from __future__ import annotations

import secrets
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

_SCHEMES = ("http://", "https://")


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
    """Subscribe `url` to `events` of `program`. The secret (generated when None) signs every delivery."""
    _require_manager(program, actor, "manage webhooks")
    url = (url or "").strip()
    if not url.startswith(_SCHEMES) or len(url) > 500:
        raise InvalidInput("url must be an http(s) URL of at most 500 characters", field="url")
    if secret is not None and not 16 <= len(secret) <= 128:
        raise InvalidInput("secret must have 16 to 128 characters", field="secret")
    subscription = create(WebhookSubscription, by=actor, program=program, url=url, events=_validate_events(events),
                          secret=secret or secrets.token_hex(32), active=True, created_by=actor)
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
    """One pending delivery per active subscription of `program` that wants `event`."""
    subscriptions = [s for s in WebhookSubscription.objects.filter(program=program, active=True)
                     if event in (s.events or [])]
    return [WebhookDelivery.objects.create(subscription=s, event=event, payload=payload) for s in subscriptions]


def record_attempt(delivery: WebhookDelivery, *, status: int | None, error: str = "",
                   delivered: bool) -> WebhookDelivery:
    """Count one attempt and keep its outcome (the last status and error; delivered_at once it succeeded)."""
    values: dict[str, Any] = {"attempts": F("attempts") + 1, "response_status": status, "error": error[:2000]}
    if delivered:
        values["delivered_at"] = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**values)
    delivery.refresh_from_db()
    return delivery
