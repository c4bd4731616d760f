"""System evaluations: the only source of scores that gates, change requests, exports and drift rely on.

An evaluation is one content (a version's payload, or the program's spec when nothing is released) run by the
system on one registered dataset with one LM configuration. It is identified for reuse by (program, content
hash, dataset hash, LM key, metric): the same question is never paid for twice, and nobody can type a score in.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from governance.models.choices import LIVE_EVALUATION_STATUSES, EvaluationStatus


class Evaluation(models.Model):
    program = models.ForeignKey("governance.Program", on_delete=models.PROTECT, related_name="evaluations")
    content_hash = models.CharField(max_length=64, help_text="Hash of the evaluated payload (a version's, or the "
                                                             "program spec's initial payload).")
    payload = models.JSONField(help_text="The evaluated payload, kept so the evaluation can be reproduced.")
    dataset = models.ForeignKey("governance.Dataset", on_delete=models.PROTECT, related_name="evaluations")
    dataset_hash = models.CharField(max_length=64)
    lm_config = models.JSONField(help_text="Model, temperature, max tokens, mode and endpoint used (no secret).")
    lm_key = models.CharField(max_length=64, help_text="Hash of lm_config: part of the reuse key.")
    metric = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=EvaluationStatus.choices, default=EvaluationStatus.QUEUED)
    run = models.ForeignKey("governance.OptimizationRun", null=True, blank=True, on_delete=models.PROTECT,
                            related_name="evaluations", help_text="The run whose final evaluation produced it.")
    score = models.FloatField(null=True, blank=True)
    examples = models.PositiveIntegerField(default=0)
    examples_done = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0, help_text="Examples whose call or parse failed.")
    calls = models.PositiveIntegerField(default=0)
    cached_calls = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0)
    seconds = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    worker = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["program", "content_hash"])]
        constraints = [
            models.UniqueConstraint(fields=["program", "content_hash", "dataset_hash", "lm_key", "metric"],
                                    condition=Q(status__in=[s.value for s in LIVE_EVALUATION_STATUSES]),
                                    name="one_live_evaluation_per_key"),
        ]

    def __str__(self) -> str:
        return f"evaluation {self.pk} ({self.content_hash[:12]} on dataset {self.dataset_id}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status not in (EvaluationStatus.QUEUED, EvaluationStatus.RUNNING)


class EvaluationResult(models.Model):
    """One example of an evaluation: what the model answered, what was parsed, the score and any error."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.PROTECT, related_name="results")
    index = models.PositiveIntegerField(help_text="The example's index in its dataset.")
    predicted = models.JSONField(default=dict)
    raw = models.TextField(blank=True)
    score = models.FloatField()
    error = models.TextField(blank=True)
    feedback = models.JSONField(null=True, blank=True, help_text="What the metric said beyond the score: an LM "
                                "judge's verdict and reason. Null when the metric gives none.")

    class Meta:
        ordering = ["evaluation", "index"]
        constraints = [models.UniqueConstraint(fields=["evaluation", "index"], name="evaluation_result_unique")]
