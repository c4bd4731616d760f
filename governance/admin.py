"""Django admin: a read-only window on every governed model.

Changes go through governance.actions (the portal and the API call them), which check permission and state
and write the audit trail. The admin therefore never adds, changes or deletes a governed row, for any user,
superusers included: no add/change/delete permission, no bulk delete, no django-simple-history revert
(its history form view saves on POST, so it is refused here), and save/delete hooks that raise if reached.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponse
from rest_framework.authtoken.admin import TokenAdmin as KeyHidingTokenAdmin
from rest_framework.authtoken.models import TokenProxy
from simple_history.admin import SimpleHistoryAdmin

from governance.models import (
    AccountState,
    ApiKey,
    AuditCheckpoint,
    AuditEvent,
    Candidate,
    ChangeRequest,
    Comment,
    Dataset,
    DriftAlert,
    Evaluation,
    EvaluationResult,
    Example,
    Export,
    Identity,
    LoginThrottle,
    Notification,
    NotificationSetting,
    OptimizationRun,
    PlaygroundCall,
    PortalSession,
    Program,
    ProgramMembership,
    PromptVersion,
    Release,
    ReleaseLabel,
    Review,
    ReviewPolicy,
    ReviewerAssignment,
    SignatureChallenge,
    Trial,
    WebhookDelivery,
    WebhookSubscription,
)

READ_ONLY_MESSAGE = "governed records change only through the portal or the API (governance.actions)"


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only: lists, filters, search and detail pages, nothing that writes."""

    actions = None
    list_per_page = 50
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # Django 6 default, silences its warning

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        raise PermissionDenied(READ_ONLY_MESSAGE)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        raise PermissionDenied(READ_ONLY_MESSAGE)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        raise PermissionDenied(READ_ONLY_MESSAGE)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        raise PermissionDenied(READ_ONLY_MESSAGE)


class ReadOnlyHistoryAdmin(ReadOnlyAdmin, SimpleHistoryAdmin):
    """Read-only with the django-simple-history timeline; viewing old records is allowed, reverting is not."""

    def revert_disabled(self, request: HttpRequest, obj: Any = None) -> bool:
        return True

    def has_change_history_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def history_form_view(self, request: HttpRequest, object_id: str, version_id: str,
                          extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method != "GET":
            raise PermissionDenied(READ_ONLY_MESSAGE)
        return super().history_form_view(request, object_id, version_id, extra_context)


@admin.register(ReviewPolicy)
class ReviewPolicyAdmin(ReadOnlyHistoryAdmin):
    list_display = ("name", "required_approvals", "reviewer_group", "require_test_not_below_production",
                    "reapproval_on_edit")
    list_filter = ("require_test_not_below_production", "reapproval_on_edit")
    search_fields = ("name",)


@admin.register(Program)
class ProgramAdmin(ReadOnlyHistoryAdmin):
    list_display = ("slug", "name", "owner", "metric", "review_policy", "reoptimize_schedule", "created_at")
    list_filter = ("reoptimize_schedule", "metric")
    search_fields = ("slug", "name", "description", "owner__username")
    date_hierarchy = "created_at"


@admin.register(ProgramMembership)
class ProgramMembershipAdmin(ReadOnlyHistoryAdmin):
    list_display = ("program", "user", "roles", "source", "granted_by", "updated_at")
    list_filter = ("source", "program")
    search_fields = ("program__slug", "user__username")


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyHistoryAdmin):
    list_display = ("name", "program", "split", "row_count", "content_hash", "created_by", "created_at")
    list_filter = ("split", "program")
    search_fields = ("name", "content_hash", "program__slug", "source_filename")
    date_hierarchy = "created_at"


@admin.register(Example)
class ExampleAdmin(ReadOnlyAdmin):
    list_display = ("dataset", "index")
    list_filter = ("dataset__split", "dataset__program")
    search_fields = ("dataset__name", "dataset__program__slug")
    list_select_related = ("dataset__program",)


@admin.register(PromptVersion)
class PromptVersionAdmin(ReadOnlyHistoryAdmin):
    """Never editable here; frozen (approved/retired) versions never change anywhere (model guard + trigger)."""

    list_display = ("program", "number", "status", "origin", "content_hash", "created_by", "created_at",
                    "approved_at")
    list_filter = ("status", "origin", "program")
    search_fields = ("program__slug", "content_hash", "note")
    list_select_related = ("program", "created_by")
    date_hierarchy = "created_at"


@admin.register(OptimizationRun)
class OptimizationRunAdmin(ReadOnlyHistoryAdmin):
    list_display = ("pk", "program", "status", "started_by", "calls", "cost_usd", "created_at", "finished_at")
    list_filter = ("status", "program")
    search_fields = ("program__slug", "study_name", "stop_reason", "error")
    list_select_related = ("program", "started_by")
    date_hierarchy = "created_at"


@admin.register(Trial)
class TrialAdmin(ReadOnlyAdmin):
    list_display = ("run", "number", "kind", "state", "score", "examples", "calls", "cost_usd", "seconds")
    list_filter = ("kind", "state")
    search_fields = ("run__program__slug", "error")
    list_select_related = ("run__program",)


@admin.register(Candidate)
class CandidateAdmin(ReadOnlyAdmin):
    list_display = ("run", "predictor", "kind", "index")
    list_filter = ("kind",)
    search_fields = ("predictor", "run__program__slug")
    list_select_related = ("run__program",)


@admin.register(Evaluation)
class EvaluationAdmin(ReadOnlyAdmin):
    list_display = ("pk", "program", "content_hash", "dataset", "status", "score", "examples", "errors", "calls",
                    "run", "created_at")
    list_filter = ("status", "program")
    search_fields = ("content_hash", "dataset_hash", "program__slug")
    list_select_related = ("program", "dataset", "run")


@admin.register(EvaluationResult)
class EvaluationResultAdmin(ReadOnlyAdmin):
    list_display = ("evaluation", "index", "score", "error")
    search_fields = ("error",)
    list_select_related = ("evaluation",)


@admin.register(PlaygroundCall)
class PlaygroundCallAdmin(ReadOnlyAdmin):
    list_display = ("pk", "user", "program", "version", "created_at", "latency_ms", "error")
    list_filter = ("program",)
    search_fields = ("user__username", "program__slug", "content_hash")
    list_select_related = ("user", "program", "version")


@admin.register(Identity)
class IdentityAdmin(ReadOnlyHistoryAdmin):
    list_display = ("user", "issuer", "subject", "last_login_at", "checked_at", "disabled_at")
    search_fields = ("user__username", "subject", "issuer")
    list_select_related = ("user",)
    exclude = ("refresh_token",)  # encrypted, but still a credential: never shown


@admin.register(SignatureChallenge)
class SignatureChallengeAdmin(ReadOnlyAdmin):
    list_display = ("pk", "user", "change_request", "decision", "created_at", "used_at", "outcome")
    list_select_related = ("user", "change_request")
    exclude = ("nonce", "state_hash")


@admin.register(PortalSession)
class PortalSessionAdmin(ReadOnlyAdmin):
    list_display = ("pk", "user", "method", "ip_address", "started_at", "last_seen_at", "ended_at", "end_reason")
    list_filter = ("method",)
    search_fields = ("user__username",)
    list_select_related = ("user",)
    exclude = ("key_hash",)


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ReadOnlyHistoryAdmin):
    list_display = ("pk", "title", "program", "version", "base_version", "status", "impact", "recommended",
                    "opened_by", "created_at", "closed_at")
    list_filter = ("status", "impact", "recommended", "program")
    search_fields = ("title", "description", "ticket_ref", "program__slug")
    list_select_related = ("program", "version", "base_version", "opened_by")
    date_hierarchy = "created_at"


@admin.register(Review)
class ReviewAdmin(ReadOnlyHistoryAdmin):
    list_display = ("change_request", "version", "printed_name", "decision", "meaning", "content_hash",
                    "auth_method", "signed_at", "voided")
    list_filter = ("decision", "meaning", "voided", "auth_method")
    search_fields = ("printed_name", "reviewer__username", "content_hash", "reason")
    list_select_related = ("change_request", "version__program")
    date_hierarchy = "signed_at"


@admin.register(Comment)
class CommentAdmin(ReadOnlyAdmin):
    list_display = ("id", "change_request", "author", "anchor", "predictor", "demo_index", "review", "created_at",
                    "resolved_at")
    list_filter = ("review", "anchor")
    search_fields = ("body", "author__username", "predictor")
    list_select_related = ("change_request", "author")


@admin.register(ReviewerAssignment)
class ReviewerAssignmentAdmin(ReadOnlyAdmin):
    list_display = ("change_request", "reviewer", "due_date", "assigned_by", "created_at", "removed_at")
    search_fields = ("reviewer__username",)
    list_select_related = ("change_request", "reviewer", "assigned_by")


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("recipient", "kind", "text", "created_at", "read_at", "email_status", "email_attempts")
    list_filter = ("kind", "email_status")
    search_fields = ("recipient__username", "text")
    list_select_related = ("recipient",)


@admin.register(NotificationSetting)
class NotificationSettingAdmin(ReadOnlyAdmin):
    list_display = ("user", "kind", "in_app", "email", "updated_at")
    list_filter = ("kind",)
    search_fields = ("user__username",)


@admin.register(ReleaseLabel)
class ReleaseLabelAdmin(ReadOnlyHistoryAdmin):
    list_display = ("program", "name", "version", "fallback_version", "kill_switch", "updated_at")
    list_filter = ("kill_switch", "name", "program")
    search_fields = ("program__slug", "name")
    list_select_related = ("program", "version", "fallback_version")


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ("program", "label", "action", "version", "previous_version", "actor", "created_at")
    list_filter = ("action", "label", "program")
    search_fields = ("program__slug", "label", "reason", "actor__username")
    list_select_related = ("program", "version", "previous_version", "actor")
    date_hierarchy = "created_at"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("pk", "created_at", "actor_name", "action", "object_type", "object_id", "program", "reason")
    list_filter = ("action", "object_type", "program")
    search_fields = ("actor_name", "action", "object_id", "reason", "request_id", "hash")
    list_select_related = ("program",)
    date_hierarchy = "created_at"


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("pk", "created_at", "event_count", "last_event_id", "head_hash", "key_fingerprint")
    search_fields = ("head_hash",)


@admin.register(Export)
class ExportAdmin(ReadOnlyAdmin):
    list_display = ("version", "label", "manifest_hash", "public_key_fingerprint", "exported_by", "created_at")
    list_filter = ("label",)
    search_fields = ("version__program__slug", "manifest_hash", "public_key_fingerprint")
    list_select_related = ("version__program", "exported_by")
    date_hierarchy = "created_at"


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(ReadOnlyHistoryAdmin):
    list_display = ("program", "url", "active", "created_by", "created_at")
    list_filter = ("active", "program")
    search_fields = ("url", "program__slug")
    exclude = ("secret",)  # the HMAC key is a secret: never rendered, even read-only


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("subscription", "event", "attempts", "response_status", "delivered_at", "created_at")
    list_filter = ("event", "response_status")
    search_fields = ("subscription__url", "error")
    date_hierarchy = "created_at"


@admin.register(DriftAlert)
class DriftAlertAdmin(ReadOnlyHistoryAdmin):
    list_display = ("program", "version", "baseline_score", "current_score", "threshold", "acknowledged_by",
                    "created_at")
    list_filter = ("program",)
    search_fields = ("program__slug",)
    date_hierarchy = "created_at"


# --- principals: users, role groups and API tokens change only through governance.actions.accounts ----------
# (the portal's Accounts pages and /api/v1/users/), which audit every change; Django's own admins for them are
# replaced by read-only ones, so there is no password form, no group editing and no token creation here.

for _model in (get_user_model(), Group, TokenProxy):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


@admin.register(get_user_model())
class UserAdmin(ReadOnlyAdmin):
    list_display = ("username", "first_name", "last_name", "email", "is_active", "is_superuser", "last_login")
    list_filter = ("is_active", "is_superuser", "groups")
    search_fields = ("username", "first_name", "last_name", "email")
    exclude = ("password",)  # a hash, but still nothing to show


@admin.register(Group)
class GroupAdmin(ReadOnlyAdmin):
    list_display = ("name",)
    search_fields = ("name",)


@admin.register(TokenProxy)
class TokenAdmin(ReadOnlyAdmin, KeyHidingTokenAdmin):
    """A list of who holds a token since when; never the key (Django titles a detail page with str(token),
    which is the key, so there is no detail page)."""

    list_display = ("user", "created")
    list_display_links = None
    list_filter = ("created",)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_view_permission(request)


@admin.register(AccountState)
class AccountStateAdmin(ReadOnlyHistoryAdmin):
    list_display = ("user", "active", "roles", "must_change_password", "password_set_by", "password_set_at",
                    "updated_at")
    list_filter = ("active", "must_change_password")
    search_fields = ("user__username",)
    list_select_related = ("user", "password_set_by")


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyHistoryAdmin):
    list_display = ("prefix", "name", "owner", "bundle_only", "created_at", "expires_at", "last_used_at",
                    "revoked_at")
    list_filter = ("bundle_only",)
    search_fields = ("prefix", "name", "owner__username")
    list_select_related = ("owner",)
    exclude = ("key_hash",)


@admin.register(LoginThrottle)
class LoginThrottleAdmin(ReadOnlyAdmin):
    list_display = ("username", "failures", "lockouts", "locked_until")
    search_fields = ("username",)
