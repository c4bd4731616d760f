"""Signed export bundles (one row per export, itself audited) and webhooks to subscribers."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from governance.models.choices import WebhookEvent


class Export(models.Model):
    version = models.ForeignKey("governance.PromptVersion", on_delete=models.PROTECT, related_name="exports")
    label = models.CharField(max_length=50, blank=True)
    manifest_hash = models.CharField(max_length=64)
    signature = models.TextField(help_text="Ed25519 signature, base64.")
    public_key_fingerprint = models.CharField(max_length=64)
    exported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class WebhookSubscription(models.Model):
    program = models.ForeignKey("governance.Program", on_delete=models.PROTECT, related_name="webhooks")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=128, help_text="Standard Webhooks secret (whsec_...): signs every delivery.")
    events = models.JSONField(default=list, help_text=f"subset of {[e.value for e in WebhookEvent]}")
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(excluded_fields=["secret"])


class WebhookDelivery(models.Model):
    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.PROTECT, related_name="deliveries")
    event = models.CharField(max_length=40, choices=WebhookEvent.choices)
    payload = models.JSONField()
    attempts = models.PositiveSmallIntegerField(default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True,
                                           help_text="When the next attempt is due; empty when none will be made.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"


class DriftAlert(models.Model):
    """The production version scored lower on newly labeled data than when it was approved."""

    program = models.ForeignKey("governance.Program", on_delete=models.PROTECT, related_name="drift_alerts")
    version = models.ForeignKey("governance.PromptVersion", on_delete=models.PROTECT, related_name="+")
    dataset = models.ForeignKey("governance.Dataset", on_delete=models.PROTECT, related_name="+")
    baseline_score = models.FloatField()
    current_score = models.FloatField()
    threshold = models.FloatField()
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at"]

    @property
    def drop_points(self) -> float:
        return round((self.baseline_score - self.current_score) * 100, 2)
