"""Playground calls: a person trying a version on one input. Recorded for that person, never evidence.

A playground call is not an Evaluation: nothing that gates a change request, a release or a drift alert ever
reads these rows. They keep what was asked and what came back, so an author can look again at what they tried.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class PlaygroundCall(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="playground_calls")
    program = models.ForeignKey("governance.Program", on_delete=models.PROTECT, related_name="playground_calls")
    version = models.ForeignKey("governance.PromptVersion", on_delete=models.PROTECT,
                                related_name="playground_calls")
    content_hash = models.CharField(max_length=64, help_text="The version's content when it was tried (a draft "
                                                             "may change afterwards).")
    lm_config = models.JSONField(help_text="Model, temperature, max tokens, mode and endpoint used (no secret).")
    example = models.ForeignKey("governance.Example", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+", help_text="The dataset row tried, when the input came from one.")
    inputs = models.JSONField()
    outputs = models.JSONField(default=dict, blank=True, help_text="Every field parsed along the way.")
    steps = models.JSONField(default=list, blank=True,
                             help_text="Per predictor: the rendered request, the raw answer, the parsed fields.")
    error = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "program", "-created_at"], name="playground_user_recent")]

    def __str__(self) -> str:
        return f"playground call {self.pk} of {self.program_id}/v{self.version_id}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
