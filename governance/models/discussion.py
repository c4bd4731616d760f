"""Discussion of a change request and the notifications people get: plain records, never signed content.

A comment belongs to a change request and, optionally, to one place in the proposed content (a predictor's
instruction, or one of its demos by position); replies form a one-level thread under a top-level comment. A
"review comment" is a reviewer's overall remark posted without a decision: it is no signature and never counts
towards approval. Assignments name the reviewers a change request waits for, with an optional due date.

Notifications are what one person is told about one event (in the portal and, per their settings, by email);
email delivery state lives on the row so a failed send is retried without telling anyone twice. None of these
rows is part of a version's content or hash: writing them never touches the signed payload.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class AnchorKind(models.TextChoices):
    """Where in the candidate's content a comment points."""

    INSTRUCTION = "instruction", "Instruction"
    DEMO = "demo", "Demo"


class Comment(models.Model):
    change_request = models.ForeignKey("governance.ChangeRequest", on_delete=models.PROTECT, related_name="comments")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="replies",
                               help_text="The thread's first comment; empty for a thread's first comment.")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    review = models.BooleanField(default=False, help_text="A reviewer's overall comment posted without a decision "
                                                          "(no signature; never counts as an approval).")
    predictor = models.CharField(max_length=100, blank=True, help_text="Anchor: the predictor commented on.")
    anchor = models.CharField(max_length=12, choices=AnchorKind.choices, blank=True)
    demo_index = models.PositiveIntegerField(null=True, blank=True, help_text="Anchor: the demo's position (0-based).")
    version = models.ForeignKey("governance.PromptVersion", on_delete=models.PROTECT, related_name="+",
                                help_text="The version under review when the comment was written.")
    content_hash = models.CharField(max_length=64, help_text="The content the comment was written on.")
    mentions = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+")

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(anchor="", predictor="", demo_index__isnull=True)
                           | Q(anchor=AnchorKind.INSTRUCTION, demo_index__isnull=True) & ~Q(predictor="")
                           | Q(anchor=AnchorKind.DEMO, demo_index__isnull=False) & ~Q(predictor="")),
                name="comment_anchor_complete"),
        ]

    def __str__(self) -> str:
        return f"comment {self.pk} on CR-{self.change_request_id}"

    @property
    def anchor_label(self) -> str:
        """"instruction of classify", "demo 3 of classify" (1-based for people), or "" when not anchored."""
        if self.anchor == AnchorKind.INSTRUCTION:
            return f"instruction of {self.predictor}"
        if self.anchor == AnchorKind.DEMO:
            return f"demo {self.demo_index + 1} of {self.predictor}"
        return ""


class ReviewerAssignment(models.Model):
    """A reviewer a change request waits for. Unassigning keeps the row (removed_at) for the record."""

    change_request = models.ForeignKey("governance.ChangeRequest", on_delete=models.PROTECT,
                                       related_name="assignments")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="review_assignments")
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    due_date = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["change_request", "reviewer"], condition=Q(removed_at=None),
                                               name="one_live_assignment_per_reviewer")]

    def __str__(self) -> str:
        return f"{self.reviewer} on CR-{self.change_request_id}"


class NotificationKind(models.TextChoices):
    REVIEW_REQUESTED = "review_requested", "Review requested"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    APPROVED = "approved", "Change approved"
    REJECTED = "rejected", "Change rejected"
    RELEASED = "released", "Release or rollback"
    RUN_FINISHED = "run_finished", "Optimization run finished"
    RUN_FAILED = "run_failed", "Optimization run failed"
    DRIFT_ALERT = "drift_alert", "Drift alert"
    MENTIONED = "mentioned", "Mentioned in a comment"
    COMMENTED = "commented", "New comment on your change or thread"


class EmailStatus(models.TextChoices):
    NONE = "", "Not emailed"
    PENDING = "pending", "Waiting to be sent"
    SENT = "sent", "Sent"
    FAILED = "failed", "Given up"


class Notification(models.Model):
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="notifications")
    kind = models.CharField(max_length=24, choices=NotificationKind.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="+", help_text="Who caused it; empty: the system.")
    program = models.ForeignKey("governance.Program", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    subject_type = models.CharField(max_length=40, help_text="change_request, run, release, drift_alert, comment")
    subject_id = models.CharField(max_length=64)
    text = models.CharField(max_length=500)
    link = models.CharField(max_length=300, help_text="Portal path of the subject.")
    in_app = models.BooleanField(default=True, help_text="Shown in the portal (the recipient's setting).")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    email_status = models.CharField(max_length=8, choices=EmailStatus.choices, blank=True, default=EmailStatus.NONE)
    email_attempts = models.PositiveIntegerField(default=0)
    email_next_attempt_at = models.DateTimeField(null=True, blank=True)
    email_error = models.TextField(blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "in_app", "read_at"], name="notification_inbox"),
                   models.Index(fields=["email_status", "email_next_attempt_at"], name="notification_email_due")]

    def __str__(self) -> str:
        return f"{self.kind} for {self.recipient}: {self.text[:40]}"


class NotificationSetting(models.Model):
    """One person's choice for one kind; no row means the defaults (governance.actions.notifications)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="notification_settings")
    kind = models.CharField(max_length=24, choices=NotificationKind.choices)
    in_app = models.BooleanField(default=True)
    email = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user", "kind"]
        constraints = [models.UniqueConstraint(fields=["user", "kind"], name="one_notification_setting_per_kind")]

    def __str__(self) -> str:
        return f"{self.user} {self.kind}: in_app={self.in_app} email={self.email}"
