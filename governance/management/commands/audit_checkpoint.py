"""Sign a checkpoint of the audit chain now: event count, last event, head hash, time."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from governance.audit import AuditChainBroken, anchor_path, write_checkpoint
from governance.models import AuditCheckpoint


class Command(BaseCommand):
    help = ("Write a signed checkpoint of the audit chain (stored in the database, appended to "
            "GOVERNANCE_AUDIT_ANCHOR_PATH, POSTed to GOVERNANCE_AUDIT_ANCHOR_URL when set). The events since the "
            "last checkpoint are verified first; a broken chain gets no checkpoint. Celery beat runs the same "
            "every GOVERNANCE_AUDIT_CHECKPOINT_SECONDS.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            checkpoint = write_checkpoint(origin="command")
        except (AuditChainBroken, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from exc
        if checkpoint is None:
            latest = AuditCheckpoint.objects.order_by("-last_event_id").first()
            self.stdout.write(f"no new events since checkpoint #{latest.pk} ({latest.event_count} events)"
                              if latest else "no audit events yet: nothing to checkpoint")
            return
        anchor = anchor_path()
        self.stdout.write(f"checkpoint #{checkpoint.pk}: {checkpoint.event_count} events up to event "
                          f"#{checkpoint.last_event_id}, head {checkpoint.head_hash}")
        self.stdout.write(f"anchored in {anchor}" if anchor else
                          "no anchor file (GOVERNANCE_AUDIT_ANCHOR_PATH is empty)")
