"""REST API views (NetBox layout): declarative viewsets over restricted querysets, one action per workflow step.

Cross-cutting rules live once in `GovernedViewSet`: the queryset is limited to programs the user may see (others
get 404), input is parsed by a serializer that checks shape only, and each write calls exactly one function
of governance.actions, which checks rights and state, writes the audit trail and commits. Views never save a
governed model. No view wraps an action in its own transaction: signing actions must be able to commit the
audit event of a failed re-authentication before they refuse.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, QuerySet
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, renderers, status, viewsets
from rest_framework import serializers as drf_serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.actions import datasets as dataset_actions
from governance.actions import dspy_files as dspy_actions
from governance.actions import exports as export_actions
from governance.actions import programs as program_actions
from governance.actions import releases as release_actions
from governance.actions import reviews as review_actions
from governance.actions import runs as run_actions
from governance.actions import versions as version_actions
from governance.actions import webhooks as webhook_actions
from governance.api import bundles
from governance.api import serializers as s
from governance.api.errors import error_body
from governance.api.filtersets import (
    AuditEventFilterSet,
    CappedCountPagination,
    ChangeRequestFilterSet,
    DatasetFilterSet,
    ExportFilterSet,
    LabelFilterSet,
    ProgramFilterSet,
    ReleaseFilterSet,
    ReviewFilterSet,
    RunFilterSet,
    TrialFilterSet,
    VersionFilterSet,
    WebhookDeliveryFilterSet,
    WebhookSubscriptionFilterSet,
)
from governance.api.permissions import restrict_to_visible
from governance.api.schema import ErrorSerializer
from governance.errors import NotFound
from governance.models import (
    AuditEvent,
    ChangeRequest,
    Dataset,
    Evaluation,
    Export,
    OptimizationRun,
    Program,
    PromptVersion,
    Release,
    ReleaseLabel,
    Review,
    Trial,
    TrialKind,
    TrialState,
    WebhookDelivery,
    WebhookSubscription,
)
from governance.reports import write_audit_csv

User = get_user_model()


# --- base ---------------------------------------------------------------------------------------------------


class GovernedViewSet(viewsets.GenericViewSet):
    """Restricts every queryset to visible programs and gives actions `parse` and `respond`.

    `program_path` is the ORM path from a row to its program ("" when the row is the program).
    """

    program_path = "program"

    def get_queryset(self) -> QuerySet:
        return restrict_to_visible(super().get_queryset(), self.request.user, self.program_path)

    def parse(self, serializer_class: type[drf_serializers.Serializer], **context: Any) -> dict[str, Any]:
        """The request body, checked for shape by `serializer_class` (400 with field errors otherwise).

        `program` in `context` scopes the ids the body may name to that program.
        """
        serializer = serializer_class(data=self.request.data, context={**self.get_serializer_context(), **context})
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def respond(self, serializer_class: type[drf_serializers.Serializer], instance: Any,
                http_status: int = status.HTTP_200_OK) -> Response:
        return Response(serializer_class(instance, context=self.get_serializer_context()).data, status=http_status)


class ReadOnlyGovernedViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GovernedViewSet):
    pass


def _reason(data: dict[str, Any]) -> str:
    return data.pop("reason", "") or ""


# --- programs -----------------------------------------------------------------------------------------------


@extend_schema_view(
    create=extend_schema(request=s.ProgramCreateSerializer, responses={201: s.ProgramSerializer}),
    partial_update=extend_schema(request=s.ProgramUpdateSerializer, responses=s.ProgramSerializer),
)
class ProgramViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GovernedViewSet):
    """LM programs under governance. Members see a program; only its owner (or an admin) changes it."""

    queryset = Program.objects.select_related("owner", "review_policy").prefetch_related("members")
    serializer_class = s.ProgramSerializer
    filterset_class = ProgramFilterSet
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    program_path = ""
    ordering_fields = ("slug", "name", "created_at")
    ordering = ("slug",)
    http_method_names = ("get", "post", "patch", "delete", "head", "options")

    def create(self, request: Request) -> Response:
        data = self.parse(s.ProgramCreateSerializer)
        program = program_actions.create_program(actor=request.user, **data)
        return self.respond(s.ProgramSerializer, program, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, slug: str | None = None) -> Response:
        data = self.parse(s.ProgramUpdateSerializer)
        program = program_actions.update_program(self.get_object(), actor=request.user, reason=_reason(data), **data)
        return self.respond(s.ProgramSerializer, program)

    @extend_schema(request=s.MemberSerializer, responses=s.ProgramSerializer)
    @action(detail=True, methods=["post"])
    def members(self, request: Request, slug: str | None = None) -> Response:
        """Add a member (owner or admin)."""
        data = self.parse(s.MemberSerializer)
        program = self.get_object()
        program_actions.add_member(program, actor=request.user, user=data["user"], reason=_reason(data))
        return self.respond(s.ProgramSerializer, self.get_queryset().get(pk=program.pk))

    @extend_schema(request=s.MemberRemoveSerializer, responses={204: None},
                   parameters=[OpenApiParameter("username", str, OpenApiParameter.PATH)])
    @action(detail=True, methods=["delete"], url_path=r"members/(?P<username>[\w.@+-]+)")
    def remove_member(self, request: Request, slug: str | None = None, username: str = "") -> Response:
        """Remove a member (owner or admin); the reason may be sent as a JSON body."""
        data = self.parse(s.MemberRemoveSerializer)
        user = User.objects.filter(username=username).first()
        if user is None:
            raise NotFound(f"no user {username!r}", field="username")
        program_actions.remove_member(self.get_object(), actor=request.user, user=user, reason=_reason(data))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request={"multipart/form-data": s.DspyImportSerializer,
                            "application/json": s.DspyImportSerializer},
                   responses={201: s.VersionSerializer})
    @action(detail=True, methods=["post"], url_path="import-dspy")
    def import_dspy(self, request: Request, slug: str | None = None) -> Response:
        """A draft version from a DSPy saved-program JSON; a file for other fields is a 400 on "file" naming them."""
        data = self.parse(s.DspyImportSerializer)
        upload = data.get("file")
        version = dspy_actions.import_dspy_version(
            self.get_object(), actor=request.user,
            content=upload.read(dspy_actions.MAX_FILE_BYTES + 1) if upload else data["state"],  # bounded read
            filename=upload.name if upload else "", note=data["note"])
        return self.respond(s.VersionSerializer, version, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.LabelSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def labels(self, request: Request, slug: str | None = None) -> Response:
        """The program's release labels and what each serves."""
        labels = ReleaseLabel.objects.filter(program=self.get_object()).select_related(
            "program", "version", "fallback_version")
        return Response(s.LabelSerializer(labels, many=True, context=self.get_serializer_context()).data)

    @extend_schema(request=s.ReleaseRequestSerializer, responses={201: s.ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def release(self, request: Request, slug: str | None = None) -> Response:
        """Point a label at an approved version (releaser; not its author, run starter or an approver)."""
        data = self.parse(s.ReleaseRequestSerializer, program=self.get_object())
        move = release_actions.release_version(data["version"], actor=request.user, label=data["label"],
                                               reason=data["reason"])
        return self.respond(s.ReleaseSerializer, move, status.HTTP_201_CREATED)

    @extend_schema(request=s.RollbackSerializer, responses={201: s.ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, slug: str | None = None) -> Response:
        """Move a label back to the previous approved version of its history (or to `to_version`)."""
        program = self.get_object()
        data = self.parse(s.RollbackSerializer, program=program)
        move = release_actions.rollback(program, actor=request.user, label=data["label"],
                                        to_version=data["to_version"], reason=data["reason"])
        return self.respond(s.ReleaseSerializer, move, status.HTTP_201_CREATED)

    @extend_schema(request=s.PinFallbackSerializer, responses={201: s.ReleaseSerializer})
    @action(detail=True, methods=["post"], url_path="pin-fallback")
    def pin_fallback(self, request: Request, slug: str | None = None) -> Response:
        """Name the approved version a label serves while its kill switch is on."""
        program = self.get_object()
        data = self.parse(s.PinFallbackSerializer, program=program)
        move = release_actions.pin_fallback(program, actor=request.user, label=data["label"],
                                            version=data["version"], reason=data["reason"])
        return self.respond(s.ReleaseSerializer, move, status.HTTP_201_CREATED)

    @extend_schema(request=s.KillSwitchSerializer, responses={201: s.ReleaseSerializer})
    @action(detail=True, methods=["post"], url_path="kill-switch")
    def kill_switch(self, request: Request, slug: str | None = None) -> Response:
        """Engage (serve the pinned fallback) or release a label's kill switch."""
        data = self.parse(s.KillSwitchSerializer)
        move = release_actions.set_kill_switch(self.get_object(), actor=request.user, label=data["label"],
                                               on=data["on"], reason=data["reason"])
        return self.respond(s.ReleaseSerializer, move, status.HTTP_201_CREATED)


# --- datasets -----------------------------------------------------------------------------------------------


@extend_schema_view(
    create=extend_schema(
        request={"multipart/form-data": s.DatasetUploadSerializer, "application/json": s.DatasetUploadSerializer},
        responses={201: s.DatasetSerializer}),
)
class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GovernedViewSet):
    """Labeled datasets. Upload a .jsonl/.csv file (multipart), JSONL/CSV text, or rows as JSON; a bad row
    refuses the whole import with its row number: 400 {"field": "rows", "detail": "row 17: ..."}."""

    queryset = Dataset.objects.select_related("program", "created_by")
    serializer_class = s.DatasetSerializer
    filterset_class = DatasetFilterSet
    ordering_fields = ("created_at", "name", "split", "row_count")
    ordering = ("-created_at", "-id")

    def create(self, request: Request) -> Response:
        data = self.parse(s.DatasetUploadSerializer)
        program = data.pop("program")
        rows = data.pop("rows") if "rows" in data else data.pop("content")
        dataset = dataset_actions.import_dataset(program, actor=request.user, rows=rows, **data)
        return self.respond(s.DatasetSerializer, dataset, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.ExampleSerializer(many=True))
    @action(detail=True, methods=["get"], filterset_class=None, ordering_fields=[], ordering=None)
    def examples(self, request: Request, pk: str | None = None) -> Response:
        """The dataset's rows in import order (paginated)."""
        examples = self.get_object().examples.order_by("index")
        page = self.paginate_queryset(examples)
        return self.get_paginated_response(s.ExampleSerializer(page, many=True).data)


# --- versions -----------------------------------------------------------------------------------------------


@extend_schema_view(
    create=extend_schema(request=s.VersionCreateSerializer, responses={201: s.VersionSerializer}),
    partial_update=extend_schema(request=s.VersionEditSerializer, responses=s.VersionSerializer),
)
class VersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GovernedViewSet):
    """Prompt versions: drafts are edited by their author, submitted for review, withdrawn; approved ones are
    frozen, exported and eventually retired."""

    queryset = PromptVersion.objects.select_related("program", "created_by")
    serializer_class = s.VersionSerializer
    filterset_class = VersionFilterSet
    ordering_fields = ("number", "created_at", "status")
    ordering = ("program__slug", "-number")
    http_method_names = ("get", "post", "patch", "head", "options")

    def create(self, request: Request) -> Response:
        data = self.parse(s.VersionCreateSerializer)
        program = data.pop("program")
        payload = data.pop("payload", None) or version_actions.initial_payload(program)
        version = version_actions.create_version(program, actor=request.user, payload=payload, **data)
        return self.respond(s.VersionSerializer, version, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        data = self.parse(s.VersionEditSerializer)
        version = version_actions.edit_version(self.get_object(), actor=request.user, reason=_reason(data), **data)
        return self.respond(s.VersionSerializer, version)

    @extend_schema(request=s.SubmitSerializer, responses={201: s.ChangeRequestSerializer})
    @action(detail=True, methods=["post"])
    def submit(self, request: Request, pk: str | None = None) -> Response:
        """Submit for review: opens a change request (or resubmits the one that requested changes)."""
        data = self.parse(s.SubmitSerializer)
        cr = review_actions.submit_for_review(self.get_object(), actor=request.user, **data)
        return self.respond(s.ChangeRequestSerializer, cr, status.HTTP_201_CREATED)

    @extend_schema(request=s.ReasonSerializer, responses=s.VersionSerializer)
    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, pk: str | None = None) -> Response:
        data = self.parse(s.ReasonSerializer)
        return self.respond(s.VersionSerializer, version_actions.withdraw_version(
            self.get_object(), actor=request.user, reason=data["reason"]))

    @extend_schema(request=s.ReasonSerializer, responses=s.VersionSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, pk: str | None = None) -> Response:
        data = self.parse(s.ReasonSerializer)
        return self.respond(s.VersionSerializer, version_actions.retire_version(
            self.get_object(), actor=request.user, reason=data["reason"]))

    @extend_schema(request=s.ExportRequestSerializer,
                   responses={200: s.BundleSerializer, 503: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def export(self, request: Request, pk: str | None = None) -> Response:
        """The signed bundle of an approved version (an Export row and an audit event)."""
        data = self.parse(s.ExportRequestSerializer)
        bundle = export_actions.export_version(self.get_object(), actor=request.user, label=data["label"] or None,
                                               reason=data["reason"])
        return Response(bundle)

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT},
                   parameters=[OpenApiParameter("layout", str, enum=["auto", "bare", "module"], default="auto",
                                                description="bare: a one-predictor program as dspy.Predict.load "
                                                            "reads it; auto: as imported, else bare for one "
                                                            "predictor")])
    @action(detail=True, methods=["get"], filterset_class=None, ordering_fields=[], ordering=None)
    def dspy(self, request: Request, pk: str | None = None) -> Response:
        """The DSPy saved-program JSON (`module.load("x.json")`) of an approved version, its LM in the lm blocks."""
        version = self.get_object()
        state = dspy_actions.export_dspy(version, actor=request.user,
                                         layout=request.query_params.get("layout", "auto"))
        response = Response(state)
        response["Content-Disposition"] = (f'attachment; filename="{version.program.slug}-v{version.number}'
                                           '.dspy.json"')
        return response


# --- runs and trials ----------------------------------------------------------------------------------------


@extend_schema_view(create=extend_schema(request=s.RunStartSerializer, responses={201: s.RunSerializer}))
class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GovernedViewSet):
    """Optimization runs: start, follow progress, cancel; their trials under /runs/{id}/trials/."""

    queryset = OptimizationRun.objects.select_related("program", "started_by")
    serializer_class = s.RunSerializer
    filterset_class = RunFilterSet
    ordering_fields = ("created_at", "status", "cost_usd")
    ordering = ("-created_at", "-id")

    def create(self, request: Request) -> Response:
        data = self.parse(s.RunStartSerializer)
        program = data.pop("program")
        run = run_actions.start_run(program, actor=request.user, **data)
        run.refresh_from_db()
        return self.respond(s.RunSerializer, run, status.HTTP_201_CREATED)

    @extend_schema(request=s.OptionalReasonSerializer, responses=s.RunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel a queued run now, or ask a running one to stop at the next trial boundary."""
        data = self.parse(s.OptionalReasonSerializer)
        run = run_actions.cancel_run(self.get_object(), actor=request.user, reason=data["reason"])
        run.refresh_from_db()
        return self.respond(s.RunSerializer, run)

    @extend_schema(request=None, responses=s.RunProgressSerializer)
    @action(detail=True, methods=["get"], filterset_class=None)
    def progress(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_queryset().annotate(trials_recorded=Count("trials")).get(pk=self.get_object().pk)
        return self.respond(s.RunProgressSerializer, run)

    @extend_schema(request=None, responses=s.TrialSerializer(many=True), filters=False, parameters=[
        OpenApiParameter("kind", str, enum=[k.value for k in TrialKind]),
        OpenApiParameter("state", str, enum=[k.value for k in TrialState]),
        OpenApiParameter("score_min", float), OpenApiParameter("score_max", float),
        OpenApiParameter("limit", int), OpenApiParameter("offset", int)])
    @action(detail=True, methods=["get"], filterset_class=None)
    def trials(self, request: Request, pk: str | None = None) -> Response:
        """The run's trials in order (filter by kind, state, score_min/score_max; paginated)."""
        run = self.get_object()
        trials = TrialFilterSet(request.query_params, queryset=Trial.objects.filter(run=run), request=request)
        if not trials.is_valid():
            raise drf_serializers.ValidationError(trials.errors)
        page = self.paginate_queryset(trials.qs.order_by("number", "kind"))
        return self.get_paginated_response(s.TrialSerializer(page, many=True).data)


class EvaluationViewSet(ReadOnlyGovernedViewSet):
    """System evaluations (read-only: only the system runs them). `results` pages through every example."""

    queryset = Evaluation.objects.select_related("program")
    serializer_class = s.EvaluationSerializer
    filterset_fields = ("status", "content_hash", "dataset", "run")
    ordering_fields = ("created_at", "score")
    ordering = ("-created_at", "-id")

    @extend_schema(responses=s.EvaluationResultSerializer(many=True))
    @action(detail=True, methods=["get"])
    def results(self, request: Request, pk: str | None = None) -> Response:
        page = self.paginate_queryset(self.get_object().results.order_by("index"))
        return self.get_paginated_response(s.EvaluationResultSerializer(page, many=True).data)


class TrialViewSet(ReadOnlyGovernedViewSet):
    queryset = Trial.objects.all()
    serializer_class = s.TrialSerializer
    filterset_class = TrialFilterSet
    program_path = "run__program"
    ordering_fields = ("number", "score", "created_at")
    ordering = ("run", "number", "kind")


# --- change requests and reviews ----------------------------------------------------------------------------


@extend_schema_view(create=extend_schema(request=s.ChangeRequestOpenSerializer,
                                         responses={201: s.ChangeRequestSerializer}))
class ChangeRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GovernedViewSet):
    """Change requests. Approve, reject and request changes are signatures: the password is required in the
    body with any authentication (an API token never signs); a wrong password is recorded and refused (403)."""

    queryset = ChangeRequest.objects.select_related("program", "version", "base_version", "opened_by",
                                                    "candidate_evaluation__program", "baseline_evaluation__program")
    serializer_class = s.ChangeRequestSerializer
    filterset_class = ChangeRequestFilterSet
    ordering_fields = ("created_at", "status", "impact")
    ordering = ("-created_at", "-id")

    def create(self, request: Request) -> Response:
        data = self.parse(s.ChangeRequestOpenSerializer)
        cr = review_actions.open_change_request(data.pop("version"), actor=request.user, **data)
        return self.respond(s.ChangeRequestSerializer, cr, status.HTTP_201_CREATED)

    @extend_schema(request=s.ApproveSerializer, responses=s.ReviewSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        data = self.parse(s.ApproveSerializer)
        review = review_actions.approve_change_request(self.get_object(), actor=request.user, **data)
        return self.respond(s.ReviewSerializer, review)

    @extend_schema(request=s.RejectSerializer, responses=s.ReviewSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        data = self.parse(s.RejectSerializer)
        review = review_actions.reject_change_request(self.get_object(), actor=request.user, **data)
        return self.respond(s.ReviewSerializer, review)

    @extend_schema(request=s.RequestChangesSerializer, responses=s.ReviewSerializer)
    @action(detail=True, methods=["post"], url_path="request-changes")
    def request_changes(self, request: Request, pk: str | None = None) -> Response:
        data = self.parse(s.RequestChangesSerializer)
        review = review_actions.request_changes(self.get_object(), actor=request.user, **data)
        return self.respond(s.ReviewSerializer, review)

    @extend_schema(request=None, responses=s.ChangeRequestSerializer)
    @action(detail=True, methods=["post"])
    def evaluate(self, request: Request, pk: str | None = None) -> Response:
        """Ask the system again for a failed or cancelled evaluation of the candidate or of production."""
        return self.respond(s.ChangeRequestSerializer, review_actions.reevaluate_change_request(
            self.get_object(), actor=request.user))

    @extend_schema(request=s.OptionalReasonSerializer, responses=s.ChangeRequestSerializer)
    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, pk: str | None = None) -> Response:
        data = self.parse(s.OptionalReasonSerializer)
        return self.respond(s.ChangeRequestSerializer, review_actions.withdraw_change_request(
            self.get_object(), actor=request.user, reason=data["reason"]))

    @extend_schema(request=s.OptionalReasonSerializer, responses=s.ChangeRequestSerializer)
    @action(detail=True, methods=["post"])
    def resubmit(self, request: Request, pk: str | None = None) -> Response:
        data = self.parse(s.OptionalReasonSerializer)
        return self.respond(s.ChangeRequestSerializer, review_actions.resubmit_change_request(
            self.get_object(), actor=request.user, reason=data["reason"]))


class ReviewViewSet(ReadOnlyGovernedViewSet):
    queryset = Review.objects.select_related("reviewer", "version")
    serializer_class = s.ReviewSerializer
    filterset_class = ReviewFilterSet
    program_path = "change_request__program"
    ordering_fields = ("signed_at",)
    ordering = ("-signed_at", "-id")


# --- releases, labels, exports ------------------------------------------------------------------------------


class ReleaseViewSet(ReadOnlyGovernedViewSet):
    """Every label move (release, rollback, fallback pin, kill switch), newest first. Moves are made with the
    program's release, rollback, pin-fallback and kill-switch endpoints."""

    queryset = Release.objects.select_related("program", "version", "previous_version", "actor")
    serializer_class = s.ReleaseSerializer
    filterset_class = ReleaseFilterSet
    ordering_fields = ("created_at",)
    ordering = ("-created_at", "-id")


class LabelViewSet(ReadOnlyGovernedViewSet):
    queryset = ReleaseLabel.objects.select_related("program", "version", "fallback_version")
    serializer_class = s.LabelSerializer
    filterset_class = LabelFilterSet
    ordering_fields = ("name", "updated_at")
    ordering = ("program__slug", "name")


class ExportViewSet(ReadOnlyGovernedViewSet):
    """The record of every signed export (the bundles themselves are not stored)."""

    queryset = Export.objects.select_related("version__program", "exported_by")
    serializer_class = s.ExportSerializer
    filterset_class = ExportFilterSet
    program_path = "version__program"
    ordering_fields = ("created_at",)
    ordering = ("-created_at", "-id")


class ReleaseBundleView(APIView):
    """Production fetch: the signed bundle a release label serves, with a strong ETag (304 on If-None-Match)."""

    @extend_schema(
        operation_id="programs_releases_bundle_retrieve",
        parameters=[OpenApiParameter("slug", str, OpenApiParameter.PATH, pattern=r"^[-a-zA-Z0-9_]+$"),
                    OpenApiParameter("label", str, OpenApiParameter.PATH, pattern=r"^[-a-zA-Z0-9_]+$"),
                    OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER, required=False)],
        responses={200: s.BundleSerializer, 304: OpenApiResponse(description="Not modified (ETag matched)"),
                   503: ErrorSerializer},
        tags=["programs"])
    def get(self, request: Request, slug: str, label: str) -> HttpResponse:
        found = restrict_to_visible(ReleaseLabel.objects.select_related("program", "version", "fallback_version"),
                                    request.user, "program").filter(program__slug=slug, name=label).first()
        if found is None:
            raise NotFound(f"no release label {label!r} in a program {slug!r} visible to you", field="label")
        built = bundles.label_bundle(found.program, found, actor=request.user)
        return _bundle_response(request.headers.get("If-None-Match", ""), built)


_bundle_view = ReleaseBundleView.as_view()


@csrf_exempt  # GET only; the regular view (and its CSRF rules for sessions) handles everything else
def release_bundle(request: Any, slug: str, label: str) -> HttpResponse:
    """The production fetch, fast: token, rights and label state in one query (memoized for
    GOVERNANCE_BUNDLE_STATE_TTL seconds per process), the cached signed bundle, ETag and 304.

    Anything off the hot path (no token, a session, a wrong token, a label the user may not see, another method)
    goes to ReleaseBundleView, which answers with the same headers and body or the precise error.
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if request.method != "GET" or not header.startswith("Token ") or " " in header[6:].strip():
        return _bundle_view(request, slug=slug, label=label)
    state = bundles.current_state(header[6:].strip(), slug, label)
    if state is None:
        return _bundle_view(request, slug=slug, label=label)
    return _bundle_response(request.META.get("HTTP_IF_NONE_MATCH", ""), bundles.state_bundle(state))


release_bundle.cls = ReleaseBundleView  # drf-spectacular documents the endpoint from the DRF view
release_bundle.initkwargs = {}


def _bundle_response(if_none_match: str, built: bundles.CachedBundle) -> HttpResponse:
    headers = {"ETag": built.etag, "Cache-Control": "private, no-cache", "Vary": "Authorization, Cookie"}
    if bundles.etag_matches(if_none_match, built.etag):
        return HttpResponse(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return HttpResponse(built.body, content_type="application/json", headers=headers)


# --- audit --------------------------------------------------------------------------------------------------


class AuditCSVRenderer(renderers.BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        """Only errors reach this renderer (the list streams its CSV itself): render them as a two-column CSV."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["code", "detail"])
        if isinstance(data, dict):
            writer.writerow([data.get("code", "error"), data.get("detail", "")])
        return buffer.getvalue().encode("utf-8")


@extend_schema_view(list=extend_schema(
    parameters=[OpenApiParameter("format", str, enum=["json", "csv"], required=False,
                                 description="csv: every matching event as a CSV file (not paginated)")],
    responses={(200, "application/json"): s.AuditEventSerializer(many=True),
               (200, "text/csv"): OpenApiTypes.STR}))
class AuditEventViewSet(ReadOnlyGovernedViewSet):
    """The hash-chained audit trail, read-only. Filter by program, actor, action (prefix with *), object and
    created_at range; `?format=csv` downloads the filtered trail as CSV (governance.reports). Its `count` stops at
    a cap (`count_capped` says so): counting every matching event of a million cost more than the page."""

    queryset = AuditEvent.objects.select_related("program", "actor")
    serializer_class = s.AuditEventSerializer
    filterset_class = AuditEventFilterSet
    pagination_class = CappedCountPagination
    renderer_classes = (renderers.JSONRenderer, renderers.BrowsableAPIRenderer, AuditCSVRenderer)
    ordering_fields = ("id", "created_at")
    ordering = ("id",)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        if getattr(request.accepted_renderer, "format", None) == "csv":
            events = self.filter_queryset(self.get_queryset())
            response = StreamingHttpResponse(_csv_chunks(events), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = 'attachment; filename="audit-trail.csv"'
            return response
        return super().list(request, *args, **kwargs)


def _csv_chunks(events: QuerySet) -> Any:
    buffer = io.StringIO()
    write_audit_csv(events, buffer)
    yield buffer.getvalue().encode("utf-8")


# --- webhooks -----------------------------------------------------------------------------------------------


@extend_schema_view(create=extend_schema(request=s.WebhookSubscriptionCreateSerializer,
                                         responses={201: s.WebhookSubscriptionCreatedSerializer}),
                    destroy=extend_schema(request=s.OptionalReasonSerializer, responses={204: None}))
class WebhookSubscriptionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GovernedViewSet):
    """Webhook subscriptions of a program (its owner or an admin manages them). The secret is shown once."""

    queryset = WebhookSubscription.objects.select_related("program", "created_by")
    serializer_class = s.WebhookSubscriptionSerializer
    filterset_class = WebhookSubscriptionFilterSet
    ordering_fields = ("created_at",)
    ordering = ("-created_at", "-id")

    def create(self, request: Request) -> Response:
        data = self.parse(s.WebhookSubscriptionCreateSerializer)
        subscription = webhook_actions.create_subscription(data.pop("program"), actor=request.user, **data)
        return self.respond(s.WebhookSubscriptionCreatedSerializer, subscription, status.HTTP_201_CREATED)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        data = self.parse(s.OptionalReasonSerializer)
        webhook_actions.delete_subscription(self.get_object(), actor=request.user, reason=data["reason"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryViewSet(ReadOnlyGovernedViewSet):
    """Every delivery with its attempts, last status and error."""

    queryset = WebhookDelivery.objects.all()
    serializer_class = s.WebhookDeliverySerializer
    filterset_class = WebhookDeliveryFilterSet
    program_path = "subscription__program"
    ordering_fields = ("created_at",)
    ordering = ("-created_at", "-id")


@csrf_exempt  # nothing happens here; a CSRF failure page would only hide the 404
def api_not_found(request: Any) -> JsonResponse:
    """No API endpoint has this path (e.g. an id that is not an integer)."""
    return JsonResponse(error_body("not_found", f"no API endpoint at {request.path}"), status=404)


# --- benchmark ceiling --------------------------------------------------------------------------------------

_STATIC_JSON = b'{"status":"ok","detail":"static JSON: the ceiling of bench/load_bundle.py"}'


def static_json(request: Any) -> HttpResponse:
    """A trivial JSON view on the same stack (only mounted when GOVERNANCE_BENCH_VIEWS=1)."""
    return HttpResponse(_STATIC_JSON, content_type="application/json")

