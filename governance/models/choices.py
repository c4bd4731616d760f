"""Status and kind constants for governed objects (string TextChoices, as the database stores them)."""

from django.db import models


class Role(models.TextChoices):
    """Django groups that carry the product's roles."""

    AUTHOR = "author", "Author"
    REVIEWER = "reviewer", "Reviewer"
    RELEASER = "releaser", "Releaser"
    AUDITOR = "auditor", "Auditor"
    ADMIN = "admin", "Administrator"


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    VAL = "val", "Validation"
    TEST = "test", "Test"


class VersionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"
    RETIRED = "retired", "Retired"


FROZEN_STATUSES = (VersionStatus.APPROVED, VersionStatus.RETIRED)


class VersionOrigin(models.TextChoices):
    MANUAL = "manual", "Manual edit"
    OPTIMIZER = "optimizer", "Optimizer run"
    DSPY_IMPORT = "dspy_import", "DSPy import"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_RUN_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class TrialKind(models.TextChoices):
    MINIBATCH = "minibatch", "Minibatch"
    FULL = "full", "Full validation"


class TrialState(models.TextChoices):
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"
    PRUNED = "pruned", "Pruned"


class CandidateKind(models.TextChoices):
    INSTRUCTION = "instruction", "Instruction"
    DEMO_SET = "demo_set", "Demo set"


class ChangeRequestStatus(models.TextChoices):
    OPEN = "open", "Open"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"


class ImpactClass(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    REQUEST_CHANGES = "request_changes", "Request changes"


class SignatureMeaning(models.TextChoices):
    APPROVAL = "approval", "I approve this prompt version for release"
    REJECTION = "rejection", "I reject this prompt version"
    REVIEW = "review", "I have reviewed this prompt version and request changes"


class ReleaseAction(models.TextChoices):
    RELEASE = "release", "Release"
    ROLLBACK = "rollback", "Rollback"
    FALLBACK_PINNED = "fallback_pinned", "Fallback pinned"
    KILL_SWITCH_ON = "kill_switch_on", "Kill switch engaged"
    KILL_SWITCH_OFF = "kill_switch_off", "Kill switch released"


class Schedule(models.TextChoices):
    NONE = "none", "Never"
    NIGHTLY = "nightly", "Nightly"
    WEEKLY = "weekly", "Weekly"


class WebhookEvent(models.TextChoices):
    CHANGE_REQUEST_OPENED = "change_request.opened", "Change request opened"
    CHANGE_REQUEST_APPROVED = "change_request.approved", "Change request approved"
    CHANGE_REQUEST_REJECTED = "change_request.rejected", "Change request rejected"
    RELEASED = "release.created", "Version released"
    ROLLED_BACK = "release.rolled_back", "Release rolled back"
    DRIFT_ALERT = "drift.alert", "Drift alert"


class EvaluationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# An evaluation in one of these states is reused for its key; a failed or cancelled one is not.
LIVE_EVALUATION_STATUSES = (EvaluationStatus.QUEUED, EvaluationStatus.RUNNING, EvaluationStatus.SUCCEEDED)
