"""Prompt versions: the governed content. Approved means frozen, enforced here and by a database trigger."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from governance.errors import FrozenVersionError
from governance.models.choices import FROZEN_STATUSES, VersionOrigin, VersionStatus
from optimizer import content_hash

# Fields whose value is the signed content: frozen once approved.
CONTENT_FIELDS = ("payload", "content_hash")
# Every field of an approved/retired version except `status` (approved -> retired) and `note` (an annotation
# outside the signed content and the manifest) is frozen: they reach signed manifests and the approval record.
# Migration 0003's trigger freezes the same columns (tests/governance/test_integrity_triggers.py holds them equal).
FROZEN_FIELDS = ("program", "number", "parent", "payload", "content_hash", "origin", "run", "scores", "created_by",
                 "created_at", "approved_at")


def payload_hash(payload: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of a payload; approvals sign this value."""
    return content_hash(payload)


class PromptVersion(models.Model):
    """One immutable-once-approved prompt configuration of a program.

    payload = {"program": <optimizer Program JSON with instructions and demos>,
               "lm": {"model": ..., "temperature": ..., "max_tokens": ...}}
    """

    program = models.ForeignKey("governance.Program", on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    payload = models.JSONField()
    content_hash = models.CharField(max_length=64)
    origin = models.CharField(max_length=16, choices=VersionOrigin.choices, default=VersionOrigin.MANUAL)
    run = models.ForeignKey("governance.OptimizationRun", null=True, blank=True, on_delete=models.PROTECT,
                            related_name="versions")
    scores = models.JSONField(default=dict, blank=True, help_text='{"val": 0.81, "test": 0.78, ...}')
    status = models.CharField(max_length=16, choices=VersionStatus.choices, default=VersionStatus.DRAFT)
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["program", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["program", "number"], name="version_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.program.slug} v{self.number}"

    @property
    def is_frozen(self) -> bool:
        return self.status in FROZEN_STATUSES

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.content_hash = payload_hash(self.payload)
        if self.pk:
            self._refuse_frozen_content_change(kwargs.get("update_fields"))
        super().save(*args, **kwargs)

    def _refuse_frozen_content_change(self, update_fields: Iterable[str] | None = None) -> None:
        """Refuse a save that would change any frozen field of an approved or retired version."""
        fields = [self._meta.get_field(name) for name in FROZEN_FIELDS]
        if update_fields is not None:  # only these columns are written
            written = {self._meta.get_field(name).attname for name in update_fields}
            fields = [field for field in fields if field.attname in written]
        stored = PromptVersion.objects.filter(pk=self.pk).values("status", *(f.attname for f in fields)).first()
        if not stored or stored["status"] not in FROZEN_STATUSES:
            return
        changed = [field.name for field in fields if stored[field.attname] != getattr(self, field.attname)]
        if "payload" in changed and "content_hash" in changed:
            changed.remove("content_hash")  # derived from the payload; naming both says nothing more
        if changed:
            raise FrozenVersionError(
                f"version {self.number} of {self.program.slug} is {stored['status']} and frozen; "
                f"its {', '.join(changed)} cannot change (create a new version instead)")

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_frozen:
            raise FrozenVersionError(f"version {self.number} is {self.status}; frozen versions cannot be deleted")
        return super().delete(*args, **kwargs)
