"""django-filter filter sets for the API's list endpoints (NetBox's filtersets.py)."""

from __future__ import annotations

import django_filters as filters
from django import forms

from governance.models import (
    AuditEvent,
    ChangeRequest,
    ChangeRequestStatus,
    Dataset,
    Decision,
    Export,
    ImpactClass,
    OptimizationRun,
    Program,
    PromptVersion,
    Release,
    ReleaseAction,
    ReleaseLabel,
    Review,
    RunStatus,
    Split,
    Trial,
    TrialKind,
    TrialState,
    VersionOrigin,
    VersionStatus,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)

MAX_ID = 2**63 - 1


class ProgramSlugFilter(filters.CharFilter):
    """`?program=<slug>`."""

    def __init__(self, field_name: str = "program__slug", **kwargs):
        kwargs.setdefault("label", "Program slug")
        super().__init__(field_name=field_name, **kwargs)


class IdFilter(filters.NumberFilter):
    """An integer id; django-filter's NumberFilter accepts decimals, an id does not."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class ProgramFilterSet(filters.FilterSet):
    owner = filters.CharFilter(field_name="owner__username")
    member = filters.CharFilter(field_name="members__username", distinct=True)
    name = filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Program
        fields = ("slug", "metric", "reoptimize_schedule")


class DatasetFilterSet(filters.FilterSet):
    program = ProgramSlugFilter()
    split = filters.ChoiceFilter(choices=Split.choices)
    content_hash = filters.CharFilter()

    class Meta:
        model = Dataset
        fields = ("program", "split", "content_hash")


class VersionFilterSet(filters.FilterSet):
    program = ProgramSlugFilter()
    number = filters.NumberFilter(min_value=0, max_value=2**31 - 1)
    status = filters.MultipleChoiceFilter(choices=VersionStatus.choices)
    origin = filters.ChoiceFilter(choices=VersionOrigin.choices)
    run = IdFilter(field_name="run_id")
    content_hash = filters.CharFilter()

    class Meta:
        model = PromptVersion
        fields = ("program", "number", "status", "origin", "run", "content_hash")


class RunFilterSet(filters.FilterSet):
    program = ProgramSlugFilter()
    status = filters.MultipleChoiceFilter(choices=RunStatus.choices)
    started_by = filters.CharFilter(field_name="started_by__username")
    created_at = filters.IsoDateTimeFromToRangeFilter()

    class Meta:
        model = OptimizationRun
        fields = ("program", "status", "started_by", "created_at")


class TrialFilterSet(filters.FilterSet):
    run = IdFilter(field_name="run_id")
    program = ProgramSlugFilter(field_name="run__program__slug")
    kind = filters.ChoiceFilter(choices=TrialKind.choices)
    state = filters.ChoiceFilter(choices=TrialState.choices)
    score_min = filters.NumberFilter(field_name="score", lookup_expr="gte")
    score_max = filters.NumberFilter(field_name="score", lookup_expr="lte")

    class Meta:
        model = Trial
        fields = ("run", "program", "kind", "state")


class ChangeRequestFilterSet(filters.FilterSet):
    program = ProgramSlugFilter()
    status = filters.MultipleChoiceFilter(choices=ChangeRequestStatus.choices)
    impact = filters.ChoiceFilter(choices=ImpactClass.choices)
    version = IdFilter(field_name="version_id")
    opened_by = filters.CharFilter(field_name="opened_by__username")

    class Meta:
        model = ChangeRequest
        fields = ("program", "status", "impact", "version", "opened_by")


class ReviewFilterSet(filters.FilterSet):
    program = ProgramSlugFilter(field_name="change_request__program__slug")
    change_request = IdFilter(field_name="change_request_id")
    version = IdFilter(field_name="version_id")
    reviewer = filters.CharFilter(field_name="reviewer__username")
    decision = filters.ChoiceFilter(choices=Decision.choices)
    voided = filters.BooleanFilter()

    class Meta:
        model = Review
        fields = ("program", "change_request", "version", "reviewer", "decision", "voided")


class ReleaseFilterSet(filters.FilterSet):
    program = ProgramSlugFilter()
    label = filters.CharFilter()
    action = filters.MultipleChoiceFilter(choices=ReleaseAction.choices)
    version = IdFilter(field_name="version_id")
    created_at = filters.IsoDateTimeFromToRangeFilter()

    class Meta:
        model = Release
        fields = ("program", "label", "action", "version", "created_at")


class LabelFilterSet(filters.FilterSet):
    program = ProgramSlugFilter()
    name = filters.CharFilter()
    kill_switch = filters.BooleanFilter()

    class Meta:
        model = ReleaseLabel
        fields = ("program", "name", "kill_switch")


class ExportFilterSet(filters.FilterSet):
    program = ProgramSlugFilter(field_name="version__program__slug")
    version = IdFilter(field_name="version_id")
    label = filters.CharFilter()

    class Meta:
        model = Export
        fields = ("program", "version", "label")


class AuditEventFilterSet(filters.FilterSet):
    program = ProgramSlugFilter()
    actor = filters.CharFilter(field_name="actor__username", label="Actor username")
    action = filters.CharFilter(help_text="Exact action, e.g. review.approved; end with * for a prefix: review.*")
    object_type = filters.CharFilter()
    object_id = filters.CharFilter()
    created_at = filters.IsoDateTimeFromToRangeFilter(
        help_text="created_at_after / created_at_before: ISO 8601 date-times, both inclusive of the range.")

    class Meta:
        model = AuditEvent
        fields = ("program", "actor", "action", "object_type", "object_id", "created_at")

    def filter_queryset(self, queryset):
        action = self.form.cleaned_data.get("action")
        if action and action.endswith("*"):
            self.form.cleaned_data["action"] = None
            queryset = queryset.filter(action__startswith=action[:-1])
        return super().filter_queryset(queryset)


class WebhookSubscriptionFilterSet(filters.FilterSet):
    program = ProgramSlugFilter()
    active = filters.BooleanFilter()

    class Meta:
        model = WebhookSubscription
        fields = ("program", "active")


class WebhookDeliveryFilterSet(filters.FilterSet):
    program = ProgramSlugFilter(field_name="subscription__program__slug")
    subscription = IdFilter(field_name="subscription_id")
    event = filters.ChoiceFilter(choices=WebhookEvent.choices)
    delivered = filters.BooleanFilter(field_name="delivered_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = WebhookDelivery
        fields = ("program", "subscription", "event", "delivered")
