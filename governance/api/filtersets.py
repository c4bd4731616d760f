"""django-filter filter sets for the API's list endpoints (NetBox's filtersets.py), and their pagination.

Every query parameter is checked here before it reaches the database: ids and integers within the database's
range, date-times normalized to UTC (PostgreSQL refuses offsets such as +20:45 that Python accepts), and
`limit`/`offset` bounded (a 20-digit limit used to overflow SQLite's and PostgreSQL's integers).

The audit trail's lists (this API's and the portal's) count at most AUDIT_COUNT_CAP matching rows: a COUNT(*) of
the 125,000 events of one action cost more than the rest of the request at a million events (issue 15).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import django_filters as filters
from django import forms
from django.db.models import QuerySet
from django_filters.fields import IsoDateTimeField, RangeField
from django_filters.widgets import DateRangeWidget
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

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
MAX_OFFSET = 2**31 - 1  # far beyond any table here, and inside every database's integer range
AUDIT_COUNT_CAP = 10_000  # read at call time, so a test can lower it


@dataclass(frozen=True)
class CappedCount:
    """How many rows match, counted up to a cap: `value` is exact when `capped` is false, else it is the cap."""

    value: int
    capped: bool


def capped_count(queryset: QuerySet[Any], cap: int | None = None) -> CappedCount:
    """The number of rows of `queryset`, reading at most cap + 1 of them (default AUDIT_COUNT_CAP).

    COUNT(*) over a LIMITed subquery: the database stops after cap + 1 index entries instead of counting every
    match, on SQLite and PostgreSQL alike. The ordering and the select_related joins are dropped first: a count
    needs neither."""
    cap = AUDIT_COUNT_CAP if cap is None else cap
    seen = queryset.order_by().select_related(None).values("pk")[: cap + 1].count()
    return CappedCount(min(seen, cap), seen > cap)


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """DRF's limit/offset pagination, strict: `limit` an integer >= 1 (above max_limit it is capped) and `offset`
    an integer from 0 to MAX_OFFSET, else 400 naming the parameter (DRF silently ignored bad values)."""

    max_limit = 1000

    def get_limit(self, request: Any) -> int | None:
        if self.limit_query_param not in request.query_params:
            return self.default_limit
        return min(_integer_param(request, self.limit_query_param, 1, None), self.max_limit)

    def get_offset(self, request: Any) -> int:
        if self.offset_query_param not in request.query_params:
            return 0
        return _integer_param(request, self.offset_query_param, 0, MAX_OFFSET)


class CappedCountPagination(BoundedLimitOffsetPagination):
    """Limit/offset over the audit trail, whose matches are too many to count on every request.

    `count` is exact up to AUDIT_COUNT_CAP; past it `count` is the cap and `count_capped` is true. Pages past the
    cap are still served: one row more than the page is read, and `next` is given while rows follow."""

    count_capped = False
    has_more = False

    def paginate_queryset(self, queryset: QuerySet[Any], request: Any, view: Any = None) -> list[Any] | None:
        self.request = request
        self.limit = self.get_limit(request)
        if self.limit is None:
            return None
        self.offset = self.get_offset(request)
        counted = capped_count(queryset)
        self.count, self.count_capped = counted.value, counted.capped
        # The browsable API's numbered page links need the last page, known only below the cap.
        self.display_page_controls = self.template is not None and self.count > self.limit and not counted.capped
        if not counted.capped and self.offset >= self.count:
            return []
        rows = list(queryset[self.offset:self.offset + self.limit + 1])
        self.has_more = len(rows) > self.limit
        return rows[:self.limit]

    def get_next_link(self) -> str | None:
        if not self.has_more:
            return None
        url = replace_query_param(self.request.build_absolute_uri(), self.limit_query_param, self.limit)
        return replace_query_param(url, self.offset_query_param, self.offset + self.limit)

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"count": self.count, "count_capped": self.count_capped, "next": self.get_next_link(),
                         "previous": self.get_previous_link(), "results": data})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        paginated = super().get_paginated_response_schema(schema)
        properties = paginated["properties"]
        properties["count"] = {**properties["count"], "description": (
            f"Matching events, exact up to {AUDIT_COUNT_CAP:,}; past that, the cap (see count_capped).")}
        paginated["properties"] = {"count": properties.pop("count"), "count_capped": {
            "type": "boolean", "example": False, "description": (
                "True when more events match than were counted: count is then the cap, not the total. Pages "
                "past it are served all the same; follow next until it is null.")}, **properties}
        paginated["required"] = [*paginated.get("required", []), "count_capped"]
        return paginated


def _integer_param(request: Any, name: str, low: int, high: int | None) -> int:
    """The integer query parameter `name` within [low, high] (no upper bound when high is None), else 400."""
    raw = request.query_params.get(name, "").strip()
    value = int(raw) if raw.isdigit() and len(raw) <= 30 else -1
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise serializers.ValidationError({name: [f"must be an integer {bounds}"]})
    return value


class UTCDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time converted to UTC: every database accepts it, whatever offset the client sent."""

    def to_python(self, value: Any) -> dt.datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(dt.UTC)
        except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is past the last representable UTC instant
            raise forms.ValidationError("date-time out of range once converted to UTC", code="invalid") from None


class UTCDateTimeRangeField(RangeField):
    widget = DateRangeWidget

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__((UTCDateTimeField(), UTCDateTimeField()), *args, **kwargs)


class UTCDateTimeFromToRangeFilter(filters.RangeFilter):
    """`<name>_after` / `<name>_before` as ISO 8601 date-times, compared in UTC."""

    field_class = UTCDateTimeRangeField


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
    created_at = UTCDateTimeFromToRangeFilter()

    class Meta:
        model = OptimizationRun
        fields = ("program", "status", "started_by", "created_at")


class TrialFilterSet(filters.FilterSet):
    run = IdFilter(field_name="run_id")
    program = ProgramSlugFilter(field_name="run__program__slug")
    kind = filters.ChoiceFilter(choices=TrialKind.choices)
    state = filters.ChoiceFilter(choices=TrialState.choices)
    score_min = filters.NumberFilter(field_name="score", lookup_expr="gte", min_value=-1e9, max_value=1e9)
    score_max = filters.NumberFilter(field_name="score", lookup_expr="lte", min_value=-1e9, max_value=1e9)

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
    created_at = UTCDateTimeFromToRangeFilter()

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
    created_at = UTCDateTimeFromToRangeFilter(
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
