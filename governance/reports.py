"""Human-readable copies of the audit trail (CSV), shared by the command line, the portal and the API.

The machine copy is the audit table itself (and the API's JSON); this CSV is for people and spreadsheets:
UTC ISO times, the printed name, before/after as readable JSON. Cells that a spreadsheet would run as a
formula (starting with = + - @ or a tab/CR) get a leading apostrophe (OWASP CSV-injection guidance); the
hash columns let anyone match a row back to the chain.
"""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from typing import IO, Any, Iterable

from django.db.models import QuerySet

from governance.models import AuditEvent, Program

AUDIT_CSV_COLUMNS = ("id", "created_at", "actor_name", "action", "object_type", "object_id", "program", "reason",
                     "before", "after", "ip", "request_id", "hash", "prev_hash")
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def audit_events(*, program: Program | str | None = None, since: date | None = None,
                 until: date | None = None) -> QuerySet[AuditEvent]:
    """Audit events in chain order, filtered by program (object or slug) and by UTC day, both days inclusive."""
    events = AuditEvent.objects.select_related("program").order_by("id")
    if program is not None:
        events = events.filter(program__slug=program) if isinstance(program, str) else events.filter(program=program)
    if since is not None:
        events = events.filter(created_at__gte=_utc_midnight(since))
    if until is not None:
        events = events.filter(created_at__lt=_utc_midnight(until + timedelta(days=1)))
    return events


def write_audit_csv(queryset: Iterable[AuditEvent], fileobj: IO[str]) -> int:
    """Write the header and one row per event; returns the number of events written."""
    writer = csv.writer(fileobj)
    writer.writerow(AUDIT_CSV_COLUMNS)
    rows = queryset.iterator(chunk_size=2000) if isinstance(queryset, QuerySet) else queryset
    count = 0
    for event in rows:
        writer.writerow([_cell(value) for value in audit_row(event)])
        count += 1
    return count


def audit_row(event: AuditEvent) -> list[Any]:
    return [
        event.pk,
        utc_iso_micro(event.created_at),
        event.actor_name,
        event.action,
        event.object_type,
        event.object_id,
        event.program.slug if event.program_id else "",
        event.reason,
        _json(event.before),
        _json(event.after),
        event.ip_address or "",
        event.request_id,
        event.hash,
        event.prev_hash,
    ]


def utc_iso_micro(value: datetime) -> str:
    return value.astimezone(dt_timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _json(value: Any) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=dt_timezone.utc)
