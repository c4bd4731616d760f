"""Change requests and the reviews (electronic signatures) that decide them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from simple_history.models import HistoricalRecords

from governance.models.choices import ChangeRequestStatus, Decision, ImpactClass, SignatureMeaning


class ChangeRequest(models.Model):
    """A proposal to make `version` the program's production content, judged against `base_version`."""

    program = models.ForeignKey("governance.Program", on_delete=models.PROTECT, related_name="change_requests")
    version = models.ForeignKey("governance.PromptVersion", on_delete=models.PROTECT, related_name="change_requests")
    base_version = models.ForeignKey("governance.PromptVersion", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+", help_text="Production version when the request was opened.")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    ticket_ref = models.CharField(max_length=100, blank=True, help_text="Change ticket in the team's tracker.")
    impact = models.CharField(max_length=8, choices=ImpactClass.choices, default=ImpactClass.MEDIUM)
    status = models.CharField(max_length=20, choices=ChangeRequestStatus.choices, default=ChangeRequestStatus.OPEN)
    recommended = models.BooleanField(default=False, help_text="True only when the system's paired comparison shows the "
                                                             "candidate beats production by more than chance.")
    evaluation = models.JSONField(default=dict, blank=True,
                                  help_text="scores of both versions per split, deltas, failing examples")
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    eval_dataset = models.ForeignKey("governance.Dataset", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+", help_text="The test dataset both versions are evaluated on.")
    candidate_evaluation = models.ForeignKey("governance.Evaluation", null=True, blank=True,
                                             on_delete=models.PROTECT, related_name="+")
    baseline_evaluation = models.ForeignKey("governance.Evaluation", null=True, blank=True,
                                            on_delete=models.PROTECT, related_name="+",
                                            help_text="What production serves (or the program spec), same rows.")
    comparison = models.JSONField(default=dict, blank=True,
                                  help_text="Paired comparison of the two evaluations (set by the system).")
    checks = models.JSONField(default=list, blank=True, help_text="Automatic candidate checks (findings).")
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"CR-{self.pk} {self.title}"


class Review(models.Model):
    """A reviewer's signed decision on the exact content hash of a version.

    `version_author` and `run_starter` are copied from the version so the database itself can refuse a
    self-approval (segregation of duties) with a check constraint.
    """

    change_request = models.ForeignKey(ChangeRequest, on_delete=models.PROTECT, related_name="reviews")
    version = models.ForeignKey("governance.PromptVersion", on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    version_author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    run_starter = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+")
    decision = models.CharField(max_length=20, choices=Decision.choices)
    reason = models.TextField(blank=True)
    meaning = models.CharField(max_length=20, choices=SignatureMeaning.choices)
    printed_name = models.CharField(max_length=200)
    content_hash = models.CharField(max_length=64, help_text="The version content this signature is bound to.")
    auth_method = models.CharField(max_length=40, default="password")  # password, session or oidc
    # Signatures through the identity provider (auth_method "oidc"): who the provider says signed, and when it
    # authenticated them. Nullable so that adding them keeps the table (and its signed-record triggers) in place.
    auth_issuer = models.CharField(max_length=255, null=True, blank=True, help_text="The provider's issuer.")
    auth_subject = models.CharField(max_length=255, null=True, blank=True, help_text="The signer's `sub` there.")
    auth_time = models.DateTimeField(null=True, blank=True,
                                     help_text="When the provider authenticated the signer for this signature.")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    signed_at = models.DateTimeField(auto_now_add=True)
    voided = models.BooleanField(default=False, help_text="Set when the content changed after this review.")
    history = HistoricalRecords()

    class Meta:
        ordering = ["change_request", "signed_at"]
        constraints = [
            models.CheckConstraint(condition=~Q(reviewer=F("version_author")), name="review_not_by_author"),
            models.CheckConstraint(condition=Q(run_starter__isnull=True) | ~Q(reviewer=F("run_starter")),
                                   name="review_not_by_run_starter"),
            models.UniqueConstraint(fields=["change_request", "reviewer", "content_hash"],
                                    condition=Q(decision="approve", voided=False),
                                    name="one_live_approval_per_reviewer"),
        ]

    def __str__(self) -> str:
        return f"{self.printed_name}: {self.decision} CR-{self.change_request_id}"
