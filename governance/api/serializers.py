"""Serializers: the shape of what the API returns and accepts. Business rules live in governance.actions.

Read serializers render rows (their querysets select the related rows they touch, so lists cost a fixed number
of queries). Input serializers check types, lengths and ranges only, then the view hands the values to one
action, which decides whether the step is allowed.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.actions import reviews as review_actions
from governance.audit import printed_name
from governance.models import (
    AuditEvent,
    ChangeRequest,
    Dataset,
    Evaluation,
    EvaluationResult,
    Export,
    ImpactClass,
    OptimizationRun,
    Program,
    PromptVersion,
    Release,
    ReleaseLabel,
    Review,
    ReviewPolicy,
    Schedule,
    SignatureMeaning,
    Split,
    Trial,
    VersionOrigin,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from governance.permissions import visible_programs

User = get_user_model()

MAX_INT = 2**31 - 1  # inputs stay inside every database's integer column
MAX_JSON_DEPTH = 32


# --- fields -------------------------------------------------------------------------------------------------


def _check_json(value: Any, depth: int = 0) -> None:
    """Refuse what PostgreSQL's jsonb cannot store (NUL characters) and absurd nesting."""
    if depth > MAX_JSON_DEPTH:
        raise serializers.ValidationError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError("must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, depth + 1)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
    elif isinstance(value, float) and math.isnan(value):
        raise serializers.ValidationError("must not contain NaN")


class JSONObjectField(serializers.JSONField):
    """A JSON object (dict) the database can store."""

    default_error_messages: ClassVar[dict[str, str]] = {"not_object": "must be a JSON object"}

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        _check_json(value)
        return value


@extend_schema_field(OpenApiTypes.OBJECT)
class _ObjectSchema(JSONObjectField):
    pass


def json_object(**kwargs: Any) -> JSONObjectField:
    return _ObjectSchema(**kwargs)


class VisibleRelatedField(serializers.PrimaryKeyRelatedField):
    """A row id the requesting user may see: rows of programs they do not belong to do not exist for them."""

    def __init__(self, model: type, program_path: str = "program", **kwargs: Any) -> None:
        self.model = model
        self.program_path = program_path
        kwargs.setdefault("queryset", model.objects.all())
        super().__init__(**kwargs)

    def get_queryset(self) -> Any:
        request = self.context.get("request")
        user = getattr(request, "user", None)
        queryset = self.model.objects.filter(**{f"{self.program_path}__in": visible_programs(user)})
        program = self.context.get("program")  # ids in a body under /programs/<slug>/ belong to that program
        return queryset if program is None else queryset.filter(**{self.program_path: program})

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool) and not 0 < data <= 2**63 - 1:
            self.fail("does_not_exist", pk_value=data)
        return super().to_internal_value(data)


class VisibleProgramField(serializers.SlugRelatedField):
    """A program slug among the programs the requesting user may see."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("slug_field", "slug")
        kwargs.setdefault("queryset", Program.objects.all())
        super().__init__(**kwargs)

    def get_queryset(self) -> Any:
        request = self.context.get("request")
        return visible_programs(getattr(request, "user", None))


class UserRefSerializer(serializers.ModelSerializer):
    name = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ("id", "username", "name")

    def get_name(self, user: Any) -> str:
        return printed_name(user)


def reason_field(*, required: bool = False) -> serializers.CharField:
    return serializers.CharField(required=required, allow_blank=not required, max_length=5000, default="" if not
                                 required else serializers.empty, help_text="Why (recorded in the audit trail).")


class RefusesSystemFields(serializers.Serializer):
    """A request body that must not carry what only the system writes (scores, evaluations, recommendations):
    such a field gets a 400 naming it, rather than being ignored so that the client believes it counted."""

    system_fields: ClassVar[tuple[str, ...]] = ("scores", "evaluation", "recommended", "comparison", "checks")

    def to_internal_value(self, data: Any) -> Any:
        sent = [name for name in self.system_fields if hasattr(data, "keys") and name in data]
        if sent:
            raise serializers.ValidationError({name: [f"{name} is set by the system's evaluations; a request "
                                                      "cannot send it"] for name in sent})
        return super().to_internal_value(data)


def content_hash_field() -> serializers.RegexField:
    return serializers.RegexField(r"^[0-9a-fA-F]{64}$", max_length=64, help_text=(
        "The content hash of the version you reviewed (shown with it); the decision is refused with 409 when "
        "the version's content changed since."))


def label_field() -> serializers.SlugField:
    return serializers.SlugField(max_length=50, default="production", help_text="Release label, e.g. production.")


# --- programs -----------------------------------------------------------------------------------------------


class ProgramSerializer(serializers.ModelSerializer):
    owner = UserRefSerializer(read_only=True)
    members = serializers.SlugRelatedField(many=True, read_only=True, slug_field="username")
    review_policy = serializers.SlugRelatedField(read_only=True, slug_field="name", allow_null=True)

    class Meta:
        model = Program
        fields = ("slug", "name", "description", "spec", "metric", "lm_config", "owner", "members", "review_policy",
                  "reoptimize_schedule", "drift_threshold", "created_at")
        read_only_fields = fields


class ProgramCreateSerializer(serializers.Serializer):
    slug = serializers.SlugField(max_length=80)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    spec = json_object(help_text="optimizer Program JSON: predictors, signatures, initial instructions.")
    metric = serializers.CharField(required=False, default="choice", max_length=200)
    lm_config = json_object(required=False, default=dict)
    review_policy = serializers.SlugRelatedField(slug_field="name", queryset=ReviewPolicy.objects.all(),
                                                 required=False, allow_null=True, default=None)
    members = serializers.SlugRelatedField(slug_field="username", queryset=User.objects.filter(is_active=True),
                                           many=True, required=False, default=list)


class ProgramUpdateSerializer(serializers.Serializer):
    """Only the fields given change; `reason` is recorded with the change."""

    name = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    spec = json_object(required=False)
    metric = serializers.CharField(required=False, max_length=200)
    lm_config = json_object(required=False)
    review_policy = serializers.SlugRelatedField(slug_field="name", queryset=ReviewPolicy.objects.all(),
                                                 required=False, allow_null=True)
    reoptimize_schedule = serializers.ChoiceField(choices=Schedule.choices, required=False)
    drift_threshold = serializers.FloatField(required=False, min_value=0, max_value=100)
    reason = reason_field()


class MemberSerializer(serializers.Serializer):
    username = serializers.SlugRelatedField(slug_field="username", queryset=User.objects.filter(is_active=True),
                                            source="user")
    reason = reason_field()


class MemberRemoveSerializer(serializers.Serializer):
    reason = reason_field()


# --- datasets -----------------------------------------------------------------------------------------------


class DatasetSerializer(serializers.ModelSerializer):
    program = serializers.SlugRelatedField(read_only=True, slug_field="slug")
    created_by = UserRefSerializer(read_only=True)

    class Meta:
        model = Dataset
        fields = ("id", "program", "name", "split", "content_hash", "row_count", "source_filename", "created_by",
                  "created_at")
        read_only_fields = fields


class DatasetUploadSerializer(serializers.Serializer):
    """One of: `file` (multipart, .jsonl or .csv), `content` (JSONL or CSV text with `format`), `rows` (JSON)."""

    program = VisibleProgramField()
    name = serializers.CharField(max_length=200)
    split = serializers.ChoiceField(choices=Split.choices)
    format = serializers.ChoiceField(choices=["jsonl", "csv"], required=False,
                                     help_text="Format of `file` or `content`; from the file name when omitted.")
    file = serializers.FileField(required=False, max_length=255, allow_empty_file=True)
    content = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=20_000_000)
    rows = serializers.ListField(child=serializers.JSONField(), required=False, max_length=1_000_000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [key for key in ("file", "content", "rows") if key in attrs]
        if len(given) != 1:
            raise serializers.ValidationError({"rows": "give exactly one of file, content or rows"})
        for row in attrs.get("rows", []):
            _check_json(row)
        if "file" in attrs:
            upload = attrs.pop("file")
            name = upload.name or ""
            fmt = attrs.get("format") or ("csv" if name.lower().endswith(".csv") else
                                          "jsonl" if name.lower().endswith((".jsonl", ".ndjson", ".json")) else None)
            if fmt is None:
                raise serializers.ValidationError({"format": "give format (jsonl or csv); the file name does not say"})
            try:
                attrs["content"] = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                raise serializers.ValidationError({"file": "the file is not UTF-8 text"}) from None
            attrs["format"], attrs["source_filename"] = fmt, name
        if "content" in attrs:
            if "\x00" in attrs["content"]:
                raise serializers.ValidationError({"content": "must not contain NUL characters"})
            if not attrs.get("format"):
                raise serializers.ValidationError({"format": "give format (jsonl or csv) with content"})
        return attrs


class ExampleSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    inputs = serializers.JSONField()
    outputs = serializers.JSONField()


# --- versions -----------------------------------------------------------------------------------------------


class VersionSerializer(serializers.ModelSerializer):
    program = serializers.SlugRelatedField(read_only=True, slug_field="slug")
    created_by = UserRefSerializer(read_only=True)

    class Meta:
        model = PromptVersion
        fields = ("id", "program", "number", "parent", "payload", "content_hash", "origin", "run", "scores",
                  "status", "note", "created_by", "created_at", "approved_at")
        read_only_fields = fields


class VersionCreateSerializer(RefusesSystemFields):
    program = VisibleProgramField()
    payload = json_object(required=False, help_text='{"program": ..., "lm": {"model", "temperature", "max_tokens"}};'
                                                    " the program's initial payload when omitted.")
    parent = VisibleRelatedField(PromptVersion, required=False, allow_null=True, default=None)
    origin = serializers.ChoiceField(choices=[VersionOrigin.MANUAL, VersionOrigin.DSPY_IMPORT],
                                     default=VersionOrigin.MANUAL,
                                     help_text="Optimizer versions are created by runs, not through this endpoint.")
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)


class VersionEditSerializer(RefusesSystemFields):
    payload = json_object(required=False)
    note = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    reason = reason_field()


class DspyImportSerializer(serializers.Serializer):
    """One of: `file` (multipart: what dspy's `module.save("x.json")` wrote) or `state` (that JSON object)."""

    file = serializers.FileField(required=False, max_length=255)
    state = json_object(required=False, help_text="The saved program's JSON, instead of a file.")
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("file" in attrs) == ("state" in attrs):
            raise serializers.ValidationError({"file": "give exactly one of file (multipart) or state (JSON)"})
        return attrs


class SubmitSerializer(serializers.Serializer):
    title = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    ticket_ref = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    impact = serializers.ChoiceField(choices=ImpactClass.choices, default=ImpactClass.MEDIUM)


class ReasonSerializer(serializers.Serializer):
    reason = reason_field(required=True)


class OptionalReasonSerializer(serializers.Serializer):
    reason = reason_field()


class ExportRequestSerializer(serializers.Serializer):
    label = serializers.SlugField(max_length=50, required=False, allow_blank=True, default="",
                                  help_text="Export as what this label serves (it must serve the version).")
    reason = reason_field()


class BundleSerializer(serializers.Serializer):
    """A signed export bundle (optimizer.bundle): verify it with the public key alone."""

    format = serializers.CharField()
    manifest = serializers.DictField()
    payload = serializers.DictField()
    dspy_state = serializers.DictField()
    signature = serializers.DictField(child=serializers.CharField())


class ExportSerializer(serializers.ModelSerializer):
    exported_by = UserRefSerializer(read_only=True)
    version_number = serializers.IntegerField(source="version.number", read_only=True)
    program = serializers.CharField(source="version.program.slug", read_only=True)

    class Meta:
        model = Export
        fields = ("id", "program", "version", "version_number", "label", "manifest_hash", "signature",
                  "public_key_fingerprint", "exported_by", "created_at")
        read_only_fields = fields


# --- runs ---------------------------------------------------------------------------------------------------


class RunSerializer(serializers.ModelSerializer):
    program = serializers.SlugRelatedField(read_only=True, slug_field="slug")
    started_by = UserRefSerializer(read_only=True)

    class Meta:
        model = OptimizationRun
        fields = ("id", "program", "status", "config", "progress", "dataset_hashes", "study_name", "started_by",
                  "base_version", "calls", "cached_calls", "prompt_tokens", "completion_tokens", "cost_usd",
                  "wall_seconds", "stop_reason", "error", "cancel_requested", "created_at", "started_at",
                  "finished_at")
        read_only_fields = fields


class RunStartSerializer(serializers.Serializer):
    program = VisibleProgramField()
    preset = serializers.ChoiceField(choices=["light", "medium", "heavy"], default="light")
    seed = serializers.IntegerField(default=0, min_value=0, max_value=MAX_INT)
    max_calls = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                         max_value=MAX_INT)
    max_tokens = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                          max_value=2**53)
    max_usd = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0, max_value=1e9)
    lm_config = json_object(required=False, allow_null=True, default=None)
    num_trials = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                          max_value=100_000)


class RunProgressSerializer(serializers.ModelSerializer):
    trials_recorded = serializers.IntegerField(read_only=True)

    class Meta:
        model = OptimizationRun
        fields = ("id", "status", "progress", "trials_recorded", "calls", "cached_calls", "cost_usd",
                  "wall_seconds", "stop_reason", "error", "cancel_requested", "heartbeat_at", "started_at",
                  "finished_at")
        read_only_fields = fields


class TrialSerializer(serializers.ModelSerializer):
    class Meta:
        model = Trial
        fields = ("id", "run", "number", "kind", "state", "params", "score", "examples", "calls", "tokens",
                  "cost_usd", "seconds", "error", "created_at")
        read_only_fields = fields


# --- change requests and reviews ----------------------------------------------------------------------------


class EvaluationSerializer(serializers.ModelSerializer):
    """A system evaluation: what was run (content, dataset, model), its status, score and spending."""

    program = serializers.SlugRelatedField(read_only=True, slug_field="slug")

    class Meta:
        model = Evaluation
        fields = ("id", "program", "content_hash", "dataset", "dataset_hash", "lm_config", "metric", "status",
                  "score", "examples", "examples_done", "errors", "calls", "cached_calls", "prompt_tokens",
                  "completion_tokens", "cost_usd", "seconds", "error", "run", "created_at", "started_at",
                  "finished_at")
        read_only_fields = fields


class EvaluationResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = EvaluationResult
        fields = ("index", "predicted", "raw", "score", "error", "feedback")
        read_only_fields = fields


class ChangeRequestSerializer(serializers.ModelSerializer):
    program = serializers.SlugRelatedField(read_only=True, slug_field="slug")
    version_number = serializers.IntegerField(source="version.number", read_only=True)
    content_hash = serializers.CharField(source="version.content_hash", read_only=True,
                                         help_text="What a reviewer signs: send it back with the decision.")
    base_version_number = serializers.IntegerField(source="base_version.number", read_only=True, allow_null=True)
    opened_by = UserRefSerializer(read_only=True)
    candidate_evaluation = EvaluationSerializer(read_only=True)
    baseline_evaluation = EvaluationSerializer(read_only=True)
    recommendation = serializers.SerializerMethodField()

    class Meta:
        model = ChangeRequest
        fields = ("id", "program", "version", "version_number", "content_hash", "base_version",
                  "base_version_number", "title", "description", "ticket_ref", "impact", "status", "recommended",
                  "recommendation", "comparison", "checks", "eval_dataset", "candidate_evaluation",
                  "baseline_evaluation", "evaluation", "opened_by", "created_at", "closed_at")
        read_only_fields = fields

    def get_recommendation(self, cr: ChangeRequest) -> str:
        return review_actions.recommendation_text(cr.comparison)


class ChangeRequestOpenSerializer(RefusesSystemFields):
    """Scores and evaluations come from the system, never from the proposer: they feed the score gate."""

    version = VisibleRelatedField(PromptVersion)
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    ticket_ref = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    impact = serializers.ChoiceField(choices=ImpactClass.choices, default=ImpactClass.MEDIUM)


class SignSerializer(serializers.Serializer):
    """A signing step: the password is always required, even with token authentication (API keys never sign)."""

    password = serializers.CharField(write_only=True, trim_whitespace=False, max_length=4096,
                                     style={"input_type": "password"},
                                     help_text="The signer's password: re-authentication at signing.")
    content_hash = content_hash_field()


class ApproveSerializer(SignSerializer):
    reason = reason_field()
    meaning = serializers.ChoiceField(choices=SignatureMeaning.choices, default=SignatureMeaning.APPROVAL)


class RejectSerializer(SignSerializer):
    reason = reason_field(required=True)
    meaning = serializers.ChoiceField(choices=SignatureMeaning.choices, default=SignatureMeaning.REJECTION)


class RequestChangesSerializer(SignSerializer):
    reason = reason_field(required=True)
    meaning = serializers.ChoiceField(choices=SignatureMeaning.choices, default=SignatureMeaning.REVIEW)


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = UserRefSerializer(read_only=True)
    version_number = serializers.IntegerField(source="version.number", read_only=True)
    meaning_text = serializers.CharField(source="get_meaning_display", read_only=True)

    class Meta:
        model = Review
        fields = ("id", "change_request", "version", "version_number", "reviewer", "printed_name", "decision",
                  "reason", "meaning", "meaning_text", "content_hash", "auth_method", "auth_issuer", "auth_subject",
                  "auth_time", "ip_address", "signed_at", "voided")  # auth_*: signatures through the identity provider
        read_only_fields = fields


# --- releases -----------------------------------------------------------------------------------------------


class ReleaseSerializer(serializers.ModelSerializer):
    program = serializers.SlugRelatedField(read_only=True, slug_field="slug")
    version_number = serializers.IntegerField(source="version.number", read_only=True)
    previous_version_number = serializers.IntegerField(source="previous_version.number", read_only=True,
                                                       allow_null=True)
    actor = UserRefSerializer(read_only=True)

    class Meta:
        model = Release
        fields = ("id", "program", "label", "action", "version", "version_number", "previous_version",
                  "previous_version_number", "reason", "actor", "created_at")
        read_only_fields = fields


class LabelSerializer(serializers.ModelSerializer):
    program = serializers.SlugRelatedField(read_only=True, slug_field="slug")
    version_number = serializers.IntegerField(source="version.number", read_only=True)
    fallback_version_number = serializers.IntegerField(source="fallback_version.number", read_only=True,
                                                       allow_null=True)
    serving_version = serializers.IntegerField(source="serving_version.pk", read_only=True)

    class Meta:
        model = ReleaseLabel
        fields = ("id", "program", "name", "version", "version_number", "fallback_version",
                  "fallback_version_number", "kill_switch", "serving_version", "updated_at")
        read_only_fields = fields


class ReleaseRequestSerializer(serializers.Serializer):
    version = VisibleRelatedField(PromptVersion)
    label = label_field()
    reason = reason_field(required=True)


class RollbackSerializer(serializers.Serializer):
    label = label_field()
    to_version = VisibleRelatedField(PromptVersion, required=False, allow_null=True, default=None,
                                     help_text="An earlier version of the label; the previous one when omitted.")
    reason = reason_field(required=True)


class PinFallbackSerializer(serializers.Serializer):
    version = VisibleRelatedField(PromptVersion)
    label = label_field()
    reason = reason_field(required=True)


class KillSwitchSerializer(serializers.Serializer):
    on = serializers.BooleanField(help_text="true engages (serve the pinned fallback), false releases it.")
    label = label_field()
    reason = reason_field(required=True)


# --- audit --------------------------------------------------------------------------------------------------


class AuditEventSerializer(serializers.ModelSerializer):
    program = serializers.SlugRelatedField(read_only=True, slug_field="slug", allow_null=True)
    actor = serializers.SlugRelatedField(read_only=True, slug_field="username", allow_null=True)

    class Meta:
        model = AuditEvent
        fields = ("id", "created_at", "actor", "actor_name", "action", "object_type", "object_id", "program",
                  "before", "after", "reason", "ip_address", "request_id", "prev_hash", "hash")
        read_only_fields = fields


# --- webhooks -----------------------------------------------------------------------------------------------


class WebhookSubscriptionSerializer(serializers.ModelSerializer):
    program = serializers.SlugRelatedField(read_only=True, slug_field="slug")
    created_by = UserRefSerializer(read_only=True)

    class Meta:
        model = WebhookSubscription
        fields = ("id", "program", "url", "events", "active", "created_by", "created_at")
        read_only_fields = fields


class WebhookSubscriptionCreatedSerializer(WebhookSubscriptionSerializer):
    """The create response: the only time the HMAC secret is shown."""

    class Meta(WebhookSubscriptionSerializer.Meta):
        fields = (*WebhookSubscriptionSerializer.Meta.fields, "secret")
        read_only_fields = fields


class WebhookSubscriptionCreateSerializer(serializers.Serializer):
    program = VisibleProgramField()
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEvent.choices), min_length=1,
                                   max_length=len(WebhookEvent.choices))
    secret = serializers.CharField(required=False, min_length=16, max_length=128,
                                   help_text="HMAC-SHA256 key; generated when omitted.")
    reason = reason_field()


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ("id", "subscription", "event", "payload", "attempts", "response_status", "error",
                  "delivered_at", "created_at")
        read_only_fields = fields
