"""API for a program's memberships and the roles they carry: /programs/<slug>/memberships/[<username>/].

Anyone who sees the program reads its members and their roles; granting, changing and revoking roles is for
administrators (governance.actions.memberships; 403 otherwise). A program the user cannot see is a 404, bad
input a 400 naming the field, a membership that already exists (or is missing, or already holds exactly those
roles) a 409. The URL names start with "program-", so an API key scoped to programs reaches only its own.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from governance.actions import memberships as membership_actions
from governance.api.permissions import restrict_to_visible
from governance.api.serializers import UserRefSerializer, reason_field
from governance.api.views import GovernedViewSet
from governance.errors import NotFound
from governance.models import PROGRAM_ROLES, Program, ProgramMembership

User = get_user_model()
USERNAME_PATTERN = r"[\w.@+-]+"


# --- serializers --------------------------------------------------------------------------------------------


class MembershipSerializer(serializers.ModelSerializer):
    user = UserRefSerializer(read_only=True)
    granted_by = UserRefSerializer(read_only=True)

    class Meta:
        model = ProgramMembership
        fields = ("user", "roles", "source", "granted_by", "created_at", "updated_at")
        read_only_fields = fields


def roles_field(*, required: bool) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=PROGRAM_ROLES), required=required, allow_empty=True, max_length=10,
        help_text="Roles on this program (empty: read access only)."
                  + ("" if required else " Omitted: the user's default roles (their global groups)."))


class MembershipGrantSerializer(serializers.Serializer):
    username = serializers.SlugRelatedField(slug_field="username", queryset=User.objects.all(), source="user")
    roles = roles_field(required=False)
    reason = reason_field()


class MembershipRolesSerializer(serializers.Serializer):
    roles = roles_field(required=True)
    reason = reason_field()


class MembershipRevokeSerializer(serializers.Serializer):
    reason = reason_field()


# --- views --------------------------------------------------------------------------------------------------

USERNAME = OpenApiParameter("username", str, OpenApiParameter.PATH)


@extend_schema_view(
    list=extend_schema(summary="Members of the program and their roles"),
    create=extend_schema(request=MembershipGrantSerializer, responses={201: MembershipSerializer}),
    retrieve=extend_schema(parameters=[USERNAME]),
    partial_update=extend_schema(request=MembershipRolesSerializer, responses=MembershipSerializer,
                                 parameters=[USERNAME]),
    destroy=extend_schema(request=MembershipRevokeSerializer, responses={204: None}, parameters=[USERNAME]),
)
class MembershipViewSet(GovernedViewSet):
    """The memberships of one program (who may see it) with each member's roles on it."""

    queryset = ProgramMembership.objects.select_related("user", "granted_by").order_by("user__username")
    serializer_class = MembershipSerializer
    ordering_fields = ("created_at", "updated_at")

    def program(self) -> Program:
        slug = self.kwargs["slug"]
        program = restrict_to_visible(Program.objects.all(), self.request.user, "").filter(slug=slug).first()
        if program is None:
            raise NotFound(f"no program {slug!r}")
        return program

    def get_queryset(self) -> QuerySet:
        return super().get_queryset().filter(program=self.program())

    def get_object(self) -> ProgramMembership:
        membership = self.get_queryset().filter(user__username=self.kwargs["username"]).first()
        if membership is None:
            raise NotFound(f"user {self.kwargs['username']!r} is not a member of program {self.kwargs['slug']}")
        return membership

    def list(self, request: Request, slug: str = "") -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(MembershipSerializer(page, many=True).data)

    def retrieve(self, request: Request, slug: str = "", username: str = "") -> Response:
        return Response(MembershipSerializer(self.get_object()).data)

    def create(self, request: Request, slug: str = "") -> Response:
        program = self.program()
        data = self.parse(MembershipGrantSerializer)
        membership = membership_actions.grant_membership(program, data["user"], actor=request.user,
                                                         roles=data.get("roles"), reason=data["reason"])
        return self.respond(MembershipSerializer, membership, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, slug: str = "", username: str = "") -> Response:
        program, user = self.program(), self._user(username)
        data = self.parse(MembershipRolesSerializer)
        membership = membership_actions.change_program_roles(program, user, data["roles"], actor=request.user,
                                                             reason=data["reason"])
        return self.respond(MembershipSerializer, membership)

    def destroy(self, request: Request, slug: str = "", username: str = "") -> Response:
        program, user = self.program(), self._user(username)
        data = self.parse(MembershipRevokeSerializer)
        membership_actions.revoke_membership(program, user, actor=request.user, reason=data["reason"])
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _user(self, username: str) -> Any:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise NotFound(f"no user {username!r}", field="username")
        return user
