"""The audit trail: append-only, hash-chained and sealed; UPDATE and DELETE are refused by database triggers.

Checkpoints are signed statements of the chain's length and head, kept here and in an anchor outside the
database (see governance.audit).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

GENESIS_HASH = "0" * 64


class AuditEvent(models.Model):
    """One state change of a governed object: who, when, what, before/after, why.

    hash = sha256(prev_hash + canonical JSON of the row's content); seal = HMAC-SHA256(audit key, hash), with
    the id of the key that made it. Someone with database access can recompute hashes but not seals: the key
    lives outside the database (see governance.audit).
    """

    created_at = models.DateTimeField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="+")
    actor_name = models.CharField(max_length=200, help_text="Printed name at the time (kept if the user changes).")
    action = models.CharField(max_length=80, db_index=True)
    object_type = models.CharField(max_length=80)
    object_id = models.CharField(max_length=64)
    program = models.ForeignKey("governance.Program", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="audit_events")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    seal = models.CharField(max_length=64, blank=True, default="",
                            help_text="HMAC-SHA256 of hash with the audit key; empty on events older than seals.")
    seal_key_id = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["program", "created_at"]), models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.object_type}:{self.object_id} by {self.actor_name}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise PermissionError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError("audit events are append-only")


class AuditCheckpoint(models.Model):
    """A signed statement: at `created_at` the chain held `event_count` events, the last one `last_event_id`
    with hash `head_hash`. Ed25519-signed with the export signing key (outside the database) and also appended
    to the anchor file, so a truncated, shortened or recomputed chain no longer matches it. Append-only.

    `last_event_id` is no foreign key on purpose: a checkpoint must outlive the events it vouches for.
    """

    created_at = models.DateTimeField()
    event_count = models.PositiveBigIntegerField()
    last_event_id = models.BigIntegerField(unique=True)
    head_hash = models.CharField(max_length=64)
    key_fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the signing public key.")
    signature = models.CharField(max_length=100, help_text="Base64 Ed25519 signature of the statement.")
    origin = models.CharField(max_length=20, help_text="command, schedule or auto (after K new events).")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"checkpoint #{self.pk}: {self.event_count} events up to #{self.last_event_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise PermissionError("audit checkpoints are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError("audit checkpoints are append-only")
