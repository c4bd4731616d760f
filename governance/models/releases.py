"""Release labels (production, staging, ...) and the append-only record of every move."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from governance.models.choices import ReleaseAction


class ReleaseLabel(models.Model):
    """Where a label points now. Changed only by release actions, each of which writes a Release record."""

    program = models.ForeignKey("governance.Program", on_delete=models.PROTECT, related_name="labels")
    name = models.SlugField(max_length=50)
    version = models.ForeignKey("governance.PromptVersion", on_delete=models.PROTECT, related_name="labels")
    fallback_version = models.ForeignKey("governance.PromptVersion", null=True, blank=True,
                                         on_delete=models.PROTECT, related_name="+")
    kill_switch = models.BooleanField(default=False, help_text="When on, the label serves the fallback version.")
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["program", "name"]
        constraints = [models.UniqueConstraint(fields=["program", "name"], name="label_unique_per_program")]

    def __str__(self) -> str:
        return f"{self.program.slug}@{self.name}"

    @property
    def serving_version(self):
        """The version production gets: the fallback while the kill switch is on."""
        if self.kill_switch and self.fallback_version_id:
            return self.fallback_version
        return self.version


class Release(models.Model):
    """One move of a label: release, rollback, fallback pin or kill switch. Never edited."""

    program = models.ForeignKey("governance.Program", on_delete=models.PROTECT, related_name="releases")
    label = models.SlugField(max_length=50)
    action = models.CharField(max_length=20, choices=ReleaseAction.choices)
    version = models.ForeignKey("governance.PromptVersion", on_delete=models.PROTECT, related_name="releases")
    previous_version = models.ForeignKey("governance.PromptVersion", null=True, blank=True,
                                         on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
