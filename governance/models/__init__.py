"""Governed entities. Every state change goes through governance.actions, never a bare .save()."""

from governance.models.accounts import AccountState, ApiKey, LoginThrottle
from governance.models.audit import GENESIS_HASH, AuditCheckpoint, AuditEvent
from governance.models.choices import (
    FINISHED_RUN_STATUSES,
    FROZEN_STATUSES,
    CandidateKind,
    ChangeRequestStatus,
    Decision,
    EvaluationStatus,
    LIVE_EVALUATION_STATUSES,
    ImpactClass,
    ReleaseAction,
    Role,
    RunStatus,
    Schedule,
    SignatureMeaning,
    Split,
    TrialKind,
    TrialState,
    VersionOrigin,
    VersionStatus,
    WebhookEvent,
)
from governance.models.discussion import (
    AnchorKind, Comment, EmailStatus, Notification, NotificationKind, NotificationSetting, ReviewerAssignment,
)
from governance.models.evaluations import Evaluation, EvaluationResult
from governance.models.exports import DriftAlert, Export, WebhookDelivery, WebhookSubscription
from governance.models.identity import Identity, PortalSession, SignatureChallenge
from governance.models.memberships import PROGRAM_ROLES, MembershipSource, ProgramMembership
from governance.models.playground import PlaygroundCall
from governance.models.programs import Dataset, Example, Program, ReviewPolicy
from governance.models.releases import Release, ReleaseLabel
from governance.models.reviews import ChangeRequest, Review
from governance.models.runs import Candidate, OptimizationRun, Trial
from governance.models.versions import PromptVersion, payload_hash

__all__ = [
    "AccountState", "ApiKey", "LoginThrottle",
    "GENESIS_HASH", "AuditCheckpoint", "AuditEvent", "FINISHED_RUN_STATUSES", "FROZEN_STATUSES", "CandidateKind",
    "ChangeRequestStatus", "Decision", "EvaluationStatus", "LIVE_EVALUATION_STATUSES", "Evaluation",
    "EvaluationResult", "ImpactClass", "ReleaseAction", "Role", "RunStatus", "Schedule",
    "SignatureMeaning", "Split", "TrialKind", "TrialState", "VersionOrigin", "VersionStatus", "WebhookEvent",
    "DriftAlert", "Export", "WebhookDelivery", "WebhookSubscription", "Dataset", "Example", "Program",
    "ReviewPolicy", "Release", "ReleaseLabel", "ChangeRequest", "Review", "Candidate", "OptimizationRun", "Trial",
    "PromptVersion", "payload_hash",
    "AnchorKind", "Comment", "EmailStatus", "Notification", "NotificationKind", "NotificationSetting",
    "ReviewerAssignment", "PROGRAM_ROLES", "MembershipSource", "ProgramMembership",
    "Identity", "PortalSession", "SignatureChallenge",
    "PlaygroundCall",
]
