"""Writing and verifying the hash-chained audit trail.

Each event's hash covers the previous event's hash and the event's own content, so altering, inserting or
removing any row breaks every later link. Writers serialize on the chain head: a PostgreSQL advisory lock
(held to the end of the transaction), and SQLite's single writer lock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from django.db import connection, transaction
from django.utils import timezone

from governance.middleware import current_request_context
from governance.models import GENESIS_HASH, AuditEvent, Program
from optimizer.program import canonical_json

_CHAIN_LOCK_ID = 4242_0001  # arbitrary constant naming the advisory lock that guards the chain head


def printed_name(user: Any) -> str:
    """The name a signature or audit row shows: full name, else username."""
    if user is None:
        return "system"
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return full or user.get_username()


def event_content(event: AuditEvent) -> dict[str, Any]:
    """The fields the hash covers, in a form that survives a database round trip unchanged."""
    return {
        "created_at": event.created_at.isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": str(event.object_id),
        "program_id": event.program_id,
        "before": event.before,
        "after": event.after,
        "reason": event.reason,
        "ip_address": event.ip_address,
        "request_id": event.request_id,
    }


def compute_hash(prev_hash: str, content: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(content)).encode("utf-8")).hexdigest()


def _lock_chain_head() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])


def record_event(action: str, *, actor: Any, obj: Any = None, program: Program | None = None,
                 before: Any = None, after: Any = None, reason: str = "",
                 object_type: str | None = None, object_id: Any = None) -> AuditEvent:
    """Append one event to the chain. Must run inside the caller's transaction (actions are atomic)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record_event must run inside transaction.atomic (call it from an action)")
    _lock_chain_head()
    context = current_request_context()
    previous = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first() or GENESIS_HASH
    event = AuditEvent(
        created_at=timezone.now(),
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=printed_name(actor),
        action=action,
        object_type=object_type or (type(obj).__name__ if obj is not None else "system"),
        object_id=str(object_id if object_id is not None else getattr(obj, "pk", "") or ""),
        program=program,
        before=before,
        after=after,
        reason=reason or "",
        ip_address=context["ip"],
        request_id=context["request_id"] or "",
        prev_hash=previous,
    )
    event.hash = compute_hash(previous, event_content(event))
    event.save(force_insert=True)
    return event


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


def events_in_order(page_size: int = 2000) -> Iterator[AuditEvent]:
    """All events by id, in pages (plain queries: no server-side cursor is left open on an early return)."""
    last_id = 0
    while True:
        page = list(AuditEvent.objects.filter(id__gt=last_id).order_by("id")[:page_size])
        if not page:
            return
        yield from page
        last_id = page[-1].id


def verify_chain(events: Iterable[AuditEvent] | None = None) -> ChainBreak | None:
    """Walk the chain in order; return the first broken link, or None when it is intact."""
    previous = GENESIS_HASH
    for event in events if events is not None else events_in_order():
        if event.prev_hash != previous:
            return ChainBreak(event.pk, f"event {event.pk} does not link to the event before it "
                                        f"(a row was removed or inserted)")
        if compute_hash(previous, event_content(event)) != event.hash:
            return ChainBreak(event.pk, f"event {event.pk} ({event.action}) was altered after it was written")
        previous = event.hash
    return None
