"""Walk the hash-chained audit trail and report the first broken link."""

from __future__ import annotations

from typing import Any, Iterator

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.audit import events_in_order, verify_chain
from governance.models import AuditEvent


class Command(BaseCommand):
    help = ("Verify the audit trail's hash chain. Exits non-zero naming the first altered, inserted or removed "
            "event. --expect-head checks that a head hash recorded earlier is still in the chain (which catches "
            "removal of the newest events).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--expect-head", help="a head hash printed by an earlier run; it must still be present")

    def handle(self, *args: Any, **options: Any) -> None:
        walk = _Walk(events_in_order())
        broken = verify_chain(walk)
        if broken is not None:
            raise CommandError(f"audit chain broken at event #{broken.event_id}: {broken.reason}")
        expected = options["expect_head"]
        if expected and expected not in walk.hashes:
            raise CommandError(f"audit chain truncated: the recorded head {expected} is no longer in the chain "
                               f"(current head {walk.head or 'none'})")
        self.stdout.write(f"audit chain intact: {walk.count} events")
        if walk.head:
            self.stdout.write(f"head: {walk.head}")


class _Walk:
    """Counts the events verify_chain reads and remembers their hashes (one pass over the table)."""

    def __init__(self, events: Iterator[AuditEvent]) -> None:
        self._events = events
        self.count = 0
        self.head = ""
        self.hashes: set[str] = set()

    def __iter__(self) -> Iterator[AuditEvent]:
        for event in self._events:
            self.count += 1
            self.head = event.hash
            self.hashes.add(event.hash)
            yield event
