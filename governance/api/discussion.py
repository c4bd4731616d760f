"""API of the discussion: comments on change requests, reviewer assignments, and one's own notifications and
notification settings.

Comments and assignments are visible to whoever may see the change request's program (others get 404); every
write calls one action of governance.actions.discussion, which decides who may do it (403), whether the change
request still takes it (409) and whether the input makes sense (400 naming the field). Notifications are only
ever one's own.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from governance.actions import discussion as discussion_actions
from governance.actions import notifications as notification_actions
from governance.api.permissions import restrict_to_visible
from governance.api.serializers import JSONObjectField, UserRefSerializer
from governance.api.views import GovernedViewSet
from governance.models import AnchorKind, ChangeRequest, Comment, Notification, ReviewerAssignment

User = get_user_model()


# --- fields -------------------------------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.INT)
class VisibleChangeRequestField(serializers.PrimaryKeyRelatedField):
    """A change request id among those of programs the requesting user may see."""

    def get_queryset(self) -> QuerySet:
        request = self.context.get("request")
        return restrict_to_visible(ChangeRequest.objects.select_related("program", "version"),
                                   getattr(request, "user", None), "program")


@extend_schema_field(OpenApiTypes.INT)
class VisibleCommentField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self) -> QuerySet:
        request = self.context.get("request")
        return restrict_to_visible(Comment.objects.all(), getattr(request, "user", None), "change_request__program")


# --- serializers ----------------------------------------------------------------------------------------------


class CommentSerializer(serializers.ModelSerializer):
    author = UserRefSerializer(read_only=True)
    resolved_by = UserRefSerializer(read_only=True, allow_null=True)
    version = serializers.IntegerField(source="version.number", read_only=True,
                                       help_text="The version under review when the comment was written.")
    mentions = serializers.SlugRelatedField(many=True, read_only=True, slug_field="username")
    anchor = serializers.ChoiceField(choices=[("", "none"), *AnchorKind.choices], read_only=True)

    class Meta:
        model = Comment
        fields = ("id", "change_request", "parent", "author", "body", "review", "anchor", "predictor", "demo_index",
                  "version", "content_hash", "mentions", "created_at", "edited_at", "resolved_at", "resolved_by")
        read_only_fields = fields


class CommentCreateSerializer(serializers.Serializer):
    change_request = VisibleChangeRequestField()
    body = serializers.CharField(max_length=discussion_actions.MAX_BODY, help_text="@username mentions a member.")
    parent = VisibleCommentField(required=False, allow_null=True, default=None,
                                 help_text="Reply to this comment's thread.")
    anchor = serializers.ChoiceField(choices=[("", "none"), *AnchorKind.choices], required=False, default="",
                                     help_text="Pin the comment to an instruction or a demo of the candidate.")
    predictor = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    demo_index = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                          max_value=10_000, help_text="The demo's position, from 0.")
    review = serializers.BooleanField(required=False, default=False,
                                      help_text="A reviewer's overall comment without a decision (no signature).")


class CommentEditSerializer(serializers.Serializer):
    body = serializers.CharField(max_length=discussion_actions.MAX_BODY)


class AssignmentSerializer(serializers.ModelSerializer):
    reviewer = UserRefSerializer(read_only=True)
    assigned_by = UserRefSerializer(read_only=True)
    removed_by = UserRefSerializer(read_only=True, allow_null=True)

    class Meta:
        model = ReviewerAssignment
        fields = ("id", "change_request", "reviewer", "assigned_by", "due_date", "created_at", "removed_at",
                  "removed_by")
        read_only_fields = fields


class AssignmentCreateSerializer(serializers.Serializer):
    change_request = VisibleChangeRequestField()
    reviewer = serializers.SlugRelatedField(slug_field="username", queryset=User.objects.filter(is_active=True),
                                            help_text="The username of someone who may review this change.")
    due_date = serializers.DateField(required=False, allow_null=True, default=None, help_text="YYYY-MM-DD (UTC).")


class NotificationSerializer(serializers.ModelSerializer):
    actor = UserRefSerializer(read_only=True, allow_null=True)
    program = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)

    class Meta:
        model = Notification
        fields = ("id", "kind", "text", "link", "program", "subject_type", "subject_id", "actor", "created_at",
                  "read_at", "email_status")
        read_only_fields = fields


class MarkReadSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), required=False,
                                allow_null=True, default=None, max_length=1000,
                                help_text="The notifications to mark read; leave out to mark every unread one.")


class MarkedSerializer(serializers.Serializer):
    marked = serializers.IntegerField(help_text="How many were unread and are now read.")


class ChannelsSerializer(serializers.Serializer):
    in_app = serializers.BooleanField()
    email = serializers.BooleanField()


class SettingsSerializer(serializers.Serializer):
    settings = serializers.DictField(child=ChannelsSerializer(), help_text="kind -> {in_app, email}")


class SettingsUpdateSerializer(serializers.Serializer):
    settings = JSONObjectField(help_text="kind -> {in_app?, email?}: only the kinds and channels you change.")


# --- views ------------------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(parameters=[OpenApiParameter("change_request", int, description="Only this change request's.")]),
    create=extend_schema(request=CommentCreateSerializer, responses={201: CommentSerializer}),
    partial_update=extend_schema(request=CommentEditSerializer, responses=CommentSerializer),
)
class CommentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GovernedViewSet):
    """Comments on change requests: threads (a reply names its `parent`), anchors, @mentions, review comments."""

    queryset = Comment.objects.select_related("author", "resolved_by", "version").prefetch_related("mentions") \
        .order_by("change_request", "created_at", "id")
    serializer_class = CommentSerializer
    program_path = "change_request__program"
    filter_backends: tuple[Any, ...] = ()
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        wanted = self.request.query_params.get("change_request", "")
        return queryset.filter(change_request_id=int(wanted)) if wanted.isdigit() else queryset

    def create(self, request: Request) -> Response:
        data = self.parse(CommentCreateSerializer)
        comment = discussion_actions.add_comment(data.pop("change_request"), actor=request.user, **data)
        return self.respond(CommentSerializer, comment, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        data = self.parse(CommentEditSerializer)
        return self.respond(CommentSerializer, discussion_actions.edit_comment(self.get_object(), actor=request.user,
                                                                             body=data["body"]))

    @extend_schema(request=None, responses=CommentSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        """Mark the thread this comment starts as resolved."""
        return self.respond(CommentSerializer, discussion_actions.resolve_comment(self.get_object(), actor=request.user))

    @extend_schema(request=None, responses=CommentSerializer)
    @action(detail=True, methods=["post"])
    def reopen(self, request: Request, pk: str | None = None) -> Response:
        return self.respond(CommentSerializer, discussion_actions.reopen_comment(self.get_object(), actor=request.user))


@extend_schema_view(
    list=extend_schema(parameters=[
        OpenApiParameter("change_request", int, description="Only this change request's."),
        OpenApiParameter("active", bool, description="Only assignments not removed (default true).")]),
    create=extend_schema(request=AssignmentCreateSerializer, responses={201: AssignmentSerializer}),
    destroy=extend_schema(request=None, responses={200: AssignmentSerializer}),
)
class AssignmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GovernedViewSet):
    """Reviewers a change request waits for, with due dates. DELETE unassigns (the row stays, marked removed)."""

    queryset = ReviewerAssignment.objects.select_related("reviewer", "assigned_by", "removed_by", "change_request") \
        .order_by("change_request", "created_at", "id")
    serializer_class = AssignmentSerializer
    program_path = "change_request__program"
    filter_backends: tuple[Any, ...] = ()
    http_method_names = ["get", "post", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        params = self.request.query_params
        if params.get("active", "true").lower() not in ("false", "0"):
            queryset = queryset.filter(removed_at=None)
        wanted = params.get("change_request", "")
        return queryset.filter(change_request_id=int(wanted)) if wanted.isdigit() else queryset

    def create(self, request: Request) -> Response:
        data = self.parse(AssignmentCreateSerializer)
        assignment = discussion_actions.assign_reviewer(data["change_request"], actor=request.user,
                                                        reviewer=data["reviewer"], due_date=data["due_date"])
        return self.respond(AssignmentSerializer, assignment, status.HTTP_201_CREATED)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        assignment = self.get_object()
        removed = discussion_actions.unassign_reviewer(assignment.change_request, actor=request.user,
                                                       reviewer=assignment.reviewer)
        return self.respond(AssignmentSerializer, removed)


@extend_schema_view(
    list=extend_schema(parameters=[OpenApiParameter("unread", bool, description="Only unread ones.")]),
)
class NotificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your notifications (the portal's bell), newest first, and your notification settings."""

    serializer_class = NotificationSerializer
    filter_backends: tuple[Any, ...] = ()

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no signed-in user
            return Notification.objects.none()
        queryset = notification_actions.inbox(self.request.user)
        if self.request.query_params.get("unread", "").lower() in ("true", "1"):
            queryset = queryset.filter(read_at=None)
        return queryset

    def get_object(self) -> Notification:
        return notification_actions.own_notification(self.request.user, self.kwargs.get("pk"))

    @extend_schema(request=None, responses=NotificationSerializer)
    @action(detail=True, methods=["post"])
    def read(self, request: Request, pk: str | None = None) -> Response:
        notification_actions.mark_read(request.user, [pk])
        return Response(NotificationSerializer(self.get_object()).data)

    @extend_schema(request=MarkReadSerializer, responses=MarkedSerializer, operation_id="notifications_read_many")
    @action(detail=False, methods=["post"], url_path="read")
    def read_many(self, request: Request) -> Response:
        """Mark the given notifications read, or every unread one."""
        body = MarkReadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        marked = notification_actions.mark_read(request.user, body.validated_data["ids"])
        return Response({"marked": marked})

    @extend_schema(methods=["get"], request=None, responses=SettingsSerializer)
    @extend_schema(methods=["patch"], request=SettingsUpdateSerializer, responses=SettingsSerializer)
    @action(detail=False, methods=["get", "patch"], url_path="settings", pagination_class=None)
    def preferences(self, request: Request) -> Response:  # not "settings": APIView.settings is DRF's own
        """Your choice per kind: shown in the portal, sent by email (an address is needed for email)."""
        if request.method == "GET":
            return Response({"settings": notification_actions.settings_of(request.user)})
        body = SettingsUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response({"settings": notification_actions.update_settings(
            request.user, actor=request.user, changes=body.validated_data["settings"])})
