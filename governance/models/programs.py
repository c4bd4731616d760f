"""Programs, their review policy and their labeled data."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from governance.models.choices import Schedule, Split


class ReviewPolicy(models.Model):
    """How many distinct approvals a change needs, from whom, and under which score gate."""

    name = models.CharField(max_length=100, unique=True)
    required_approvals = models.PositiveSmallIntegerField(default=2)
    reviewer_group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.PROTECT,
                                       help_text="Only members of this group may review; empty = the reviewer role.")
    require_test_not_below_production = models.BooleanField(default=True)
    reapproval_on_edit = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "review policies"
        constraints = [models.CheckConstraint(condition=models.Q(required_approvals__gte=1),
                                              name="policy_needs_one_approval")]

    def __str__(self) -> str:
        return f"{self.name} ({self.required_approvals} approvals)"


class Program(models.Model):
    """An LM program under governance: its spec (optimizer program JSON), metric and default LM."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    spec = models.JSONField(help_text="optimizer.Program JSON: predictors, signatures, initial instructions.")
    metric = models.CharField(max_length=200, default="choice",
                              help_text="exact, choice, f1, or module:function")
    lm_config = models.JSONField(default=dict, blank=True, help_text="optimizer.LMConfig JSON for runs.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_programs")
    # Each member's roles on this program live on the membership (governance.models.memberships).
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="programs", blank=True,
                                     through="governance.ProgramMembership",
                                     through_fields=("program", "user"))
    review_policy = models.ForeignKey(ReviewPolicy, null=True, blank=True, on_delete=models.PROTECT)
    reoptimize_schedule = models.CharField(max_length=16, choices=Schedule.choices, default=Schedule.NONE)
    drift_threshold = models.FloatField(default=3.0, help_text="Alert when the production score drops by more "
                                                               "than this many points on new labeled data.")
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()  # memberships keep their own history (ProgramMembership.history)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Dataset(models.Model):
    """An immutable batch of labeled examples of one split, identified by its content hash."""

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="datasets")
    name = models.CharField(max_length=200)
    split = models.CharField(max_length=8, choices=Split.choices)
    content_hash = models.CharField(max_length=64)
    row_count = models.PositiveIntegerField(default=0)
    source_filename = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["program", "split", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["program", "split", "content_hash"],
                                               name="dataset_unique_content_per_split")]

    def __str__(self) -> str:
        return f"{self.program.slug}/{self.split}/{self.name}"


class Example(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="examples")
    index = models.PositiveIntegerField()
    inputs = models.JSONField()
    outputs = models.JSONField()

    class Meta:
        ordering = ["dataset", "index"]
        constraints = [models.UniqueConstraint(fields=["dataset", "index"], name="example_unique_index")]

    def as_record(self) -> dict:
        return {**self.inputs, **self.outputs}
