"""Prompt versions: the governed content. Approved means frozen, enforced here and by a database trigger."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from governance.errors import FrozenVersionError
from governance.models.choices import FROZEN_STATUSES, VersionOrigin, VersionStatus
from optimizer.program import content_hash

# Fields whose value is the signed content: frozen once approved.
CONTENT_FIELDS = ("payload", "content_hash")


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
            self._refuse_frozen_content_change()
        super().save(*args, **kwargs)

    def _refuse_frozen_content_change(self) -> None:
        stored = PromptVersion.objects.filter(pk=self.pk).values("status", "content_hash").first()
        if stored and stored["status"] in FROZEN_STATUSES and stored["content_hash"] != self.content_hash:
            raise FrozenVersionError(
                f"version {self.number} of {self.program.slug} is {stored['status']} and frozen; "
                "its payload cannot change (create a new version instead)")

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_frozen:
            raise FrozenVersionError(f"version {self.number} is {self.status}; frozen versions cannot be deleted")
        return super().delete(*args, **kwargs)
