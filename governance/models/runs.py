"""Optimization runs, their trials and the candidates they considered."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from governance.models.choices import CandidateKind, RunStatus, TrialKind, TrialState


class OptimizationRun(models.Model):
    program = models.ForeignKey("governance.Program", on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    config = models.JSONField(default=dict, help_text="preset, seed, task/proposal LM config, budgets")
    progress = models.JSONField(default=dict, blank=True,
                                help_text="trials_done, trials_planned, best_score, eta_seconds, ...")
    dataset_hashes = models.JSONField(default=dict, blank=True)
    study_name = models.CharField(max_length=200, blank=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    base_version = models.ForeignKey("governance.PromptVersion", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+", help_text="The version the run started from.")
    calls = models.PositiveIntegerField(default=0)
    cached_calls = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0)
    wall_seconds = models.FloatField(default=0.0)
    stop_reason = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords(excluded_fields=["progress", "heartbeat_at"])

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.program.slug} ({self.status})"


class Trial(models.Model):
    """One evaluated configuration; written once, as the optimizer reports it."""

    run = models.ForeignKey(OptimizationRun, on_delete=models.PROTECT, related_name="trials")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=TrialKind.choices)
    state = models.CharField(max_length=16, choices=TrialState.choices, default=TrialState.COMPLETE)
    params = models.JSONField(default=dict)
    score = models.FloatField(null=True, blank=True)
    examples = models.PositiveIntegerField(default=0)
    calls = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0)
    seconds = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [models.UniqueConstraint(fields=["run", "number", "kind"], name="trial_unique_number")]


class Candidate(models.Model):
    """An instruction or demo set the run proposed for one predictor."""

    run = models.ForeignKey(OptimizationRun, on_delete=models.PROTECT, related_name="candidates")
    predictor = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=CandidateKind.choices)
    index = models.PositiveIntegerField()
    content = models.JSONField(help_text="instruction text, or the list of demos")
    metadata = models.JSONField(default=dict, blank=True, help_text="tip, source, mean score, ...")

    class Meta:
        ordering = ["run", "predictor", "kind", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "predictor", "kind", "index"],
                                               name="candidate_unique_index")]
