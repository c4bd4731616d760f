"""API for principals: the requesting user (/users/me/, own token and password) and, for administrators, every
account (list, create, deactivate/reactivate, password reset, role grant/revoke, token list and revocation).

Every write calls one action of governance.actions.accounts (audited, one transaction). Reading accounts is
for administrators and auditors; everyone else gets 403. Bad input is a 400 naming the field, an illegal step
(a role already held, the last administrator, ...) a 409.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, update_session_auth_hash
from django.db.models import Prefetch, QuerySet
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from governance.actions import accounts
from governance.actions import tokens
from governance.api.serializers import UserRefSerializer, VisibleProgramField, reason_field
from governance.audit import printed_name
from governance.errors import NotFound
from governance.models import AccountState, ApiKey, Role
from governance.models.accounts import MUST_CHANGE_PASSWORD_SESSION_KEY
from governance.permissions import ROLE_NAMES, has_role, require_role, user_roles, visible_programs

User = get_user_model()

USERNAME_PATTERN = r"[\w.@+-]+"
LIVE_KEYS = "live_api_keys"  # where AccountViewSet.get_queryset leaves each account's live keys


class KeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """The schema's name and description of governance.api.authentication.KeyAuthentication."""

    target_class = "governance.api.authentication.KeyAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")


# --- serializers --------------------------------------------------------------------------------------------


def password_field(help_text: str) -> serializers.CharField:
    return serializers.CharField(write_only=True, trim_whitespace=False, max_length=4096,
                                 style={"input_type": "password"}, help_text=help_text)


class MeSerializer(serializers.ModelSerializer):
    name = serializers.SerializerMethodField()
    email = serializers.CharField(read_only=True)
    roles = serializers.SerializerMethodField(help_text="Global roles (author, reviewer, releaser: defaults only).")
    programs = serializers.SerializerMethodField()
    program_roles = serializers.SerializerMethodField(help_text="Your roles on each program you are a member of.")
    must_change_password = serializers.SerializerMethodField(
        help_text="An administrator set your password: change it (POST users/me/password/) before you can sign.")

    class Meta:
        model = User
        fields = ("id", "username", "name", "email", "roles", "programs", "program_roles", "must_change_password")
        read_only_fields = fields

    def get_name(self, user: Any) -> str:
        return printed_name(user)

    def get_roles(self, user: Any) -> list[str]:
        return sorted(user_roles(user))

    def get_programs(self, user: Any) -> list[str]:
        return list(visible_programs(user).order_by("slug").values_list("slug", flat=True))

    def get_program_roles(self, user: Any) -> dict[str, list[str]]:
        return dict(user.program_memberships.order_by("program__slug").values_list("program__slug", "roles"))

    def get_must_change_password(self, user: Any) -> bool:
        return accounts.must_change_password(user)


class TokenRequestSerializer(serializers.Serializer):
    password = password_field("Your current password.")


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Token <token>`; shown once.")
    created = serializers.DateTimeField()


class ApiKeySerializer(serializers.ModelSerializer):
    """An API key as lists show it: the prefix, scope and dates, never the key."""

    programs = serializers.SlugRelatedField(many=True, read_only=True, slug_field="slug")
    active = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = ("id", "prefix", "name", "programs", "bundle_only", "active", "created_at", "expires_at",
                  "last_used_at", "revoked_at")
        read_only_fields = fields

    def get_active(self, key: ApiKey) -> bool:
        return key.state == "live"


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="Send as `Authorization: Token <key>`; shown once, stored only hashed.")

    class Meta(ApiKeySerializer.Meta):
        fields = ("key", *ApiKeySerializer.Meta.fields)
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    programs = serializers.ListField(child=VisibleProgramField(), required=False, default=list,
                                     help_text="Limit the key to these programs (empty: all the owner may see).")
    bundle_only = serializers.BooleanField(required=False, default=False,
                                           help_text="The key only fetches release bundles.")
    expires_in_days = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                               help_text="Default: GOVERNANCE_API_KEY_DEFAULT_DAYS.")


class OwnApiKeyCreateSerializer(ApiKeyCreateSerializer):
    password = password_field("Your current password.")


class ServiceAccountCreateSerializer(serializers.Serializer):
    username = serializers.RegexField(rf"^{USERNAME_PATTERN}$", max_length=150)
    roles = serializers.ListField(child=serializers.ChoiceField(choices=Role.choices), required=False, default=list)
    first_name = serializers.CharField(required=False, allow_blank=True, default="", max_length=150)
    last_name = serializers.CharField(required=False, allow_blank=True, default="", max_length=150)


class AccountSerializer(serializers.ModelSerializer):
    """An account as administrators and auditors see it: roles, activity, password state, memberships, tokens."""

    name = serializers.SerializerMethodField()
    email = serializers.CharField(read_only=True, help_text="Email address; empty when none is known.")
    active = serializers.BooleanField(source="is_active", read_only=True)
    roles = serializers.SerializerMethodField()
    must_change_password = serializers.SerializerMethodField()
    password_set_by = serializers.SerializerMethodField()
    password_set_at = serializers.SerializerMethodField()
    programs = serializers.SerializerMethodField(help_text="Programs the user is a member of.")
    service_account = serializers.SerializerMethodField()
    tokens = serializers.SerializerMethodField(help_text="The live API keys (never the keys themselves).")

    class Meta:
        model = User
        fields = ("id", "username", "name", "first_name", "last_name", "email", "active", "service_account",
                  "is_superuser", "roles",
                  "must_change_password", "password_set_by", "password_set_at", "programs", "tokens",
                  "date_joined", "last_login")
        read_only_fields = fields

    def _state(self, user: Any) -> AccountState:
        cache = self.context.setdefault("_states", {})
        if user.pk not in cache:
            cache[user.pk] = accounts.account_state(user)
        return cache[user.pk]

    def get_name(self, user: Any) -> str:
        return printed_name(user)

    def get_roles(self, user: Any) -> list[str]:
        return sorted(g.name for g in user.groups.all() if g.name in ROLE_NAMES)

    def get_must_change_password(self, user: Any) -> bool:
        return self._state(user).must_change_password

    def get_password_set_by(self, user: Any) -> dict[str, Any] | None:
        by = self._state(user).password_set_by
        return UserRefSerializer(by).data if by is not None else None

    def get_password_set_at(self, user: Any) -> str | None:
        at = self._state(user).password_set_at
        return serializers.DateTimeField().to_representation(at) if at else None

    def get_programs(self, user: Any) -> list[str]:
        return sorted(p.slug for p in user.programs.all())

    def get_service_account(self, user: Any) -> bool:
        return self._state(user).service_account

    def get_tokens(self, user: Any) -> list[dict[str, Any]]:
        keys = getattr(user, LIVE_KEYS, None)  # prefetched by AccountViewSet.get_queryset for the whole page
        if keys is None:
            keys = tokens.active_keys(user).prefetch_related("programs")
        return ApiKeySerializer(keys, many=True).data


class UserCreateSerializer(serializers.Serializer):
    username = serializers.RegexField(rf"^{USERNAME_PATTERN}$", max_length=150)
    password = password_field("Initial password; the user must change it before signing.")
    roles = serializers.ListField(child=serializers.ChoiceField(choices=Role.choices), required=False, default=list)
    first_name = serializers.CharField(required=False, allow_blank=True, default="", max_length=150)
    last_name = serializers.CharField(required=False, allow_blank=True, default="", max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True, default="")


class PasswordResetSerializer(serializers.Serializer):
    password = password_field("The new password; the user must change it before signing. Revokes their tokens.")
    reason = reason_field()


class OwnPasswordSerializer(serializers.Serializer):
    old_password = password_field("Your current password.")
    new_password = password_field("Your new password.")


class RoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)
    reason = reason_field()


class AccountReasonSerializer(serializers.Serializer):
    reason = reason_field()


# --- views --------------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(responses=AccountSerializer(many=True)),
    retrieve=extend_schema(responses=AccountSerializer),
    create=extend_schema(request=UserCreateSerializer, responses={201: AccountSerializer}),
)
class AccountViewSet(viewsets.GenericViewSet):
    """User accounts. `me` is you; everything else is for administrators (auditors may read)."""

    queryset = User.objects.order_by("username").select_related("account_state__password_set_by") \
        .prefetch_related("groups", "programs")
    serializer_class = AccountSerializer
    lookup_field = "username"
    lookup_value_regex = USERNAME_PATTERN
    filter_backends: tuple[Any, ...] = ()

    def get_queryset(self) -> QuerySet:
        """Accounts with their state, groups, programs and live keys read once for the page, not per account."""
        keys = Prefetch("api_keys", queryset=tokens.live_keys().prefetch_related("programs"), to_attr=LIVE_KEYS)
        return super().get_queryset().prefetch_related(keys)

    # -- you

    @extend_schema(request=None, responses=MeSerializer)
    @action(detail=False, methods=["get"], pagination_class=None)
    def me(self, request: Request) -> Response:
        return Response(MeSerializer(request.user, context={"request": request}).data)

    @extend_schema(request=TokenRequestSerializer, responses={201: TokenSerializer})
    @action(detail=False, methods=["post"], url_path="me/token")
    def token(self, request: Request) -> Response:
        """Create or rotate your API token (the old one stops working); needs your password."""
        data = self._parse(TokenRequestSerializer)
        row, key = tokens.rotate_token(actor=request.user, password=data["password"])
        return Response(TokenSerializer({"token": key, "created": row.created_at}).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(methods=["get"], request=None, responses=ApiKeySerializer(many=True))
    @extend_schema(methods=["post"], request=OwnApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    @action(detail=False, methods=["get", "post"], url_path="me/keys", pagination_class=None)
    def my_keys(self, request: Request) -> Response:
        """Your API keys; POST makes a named, optionally scoped and expiring one (needs your password)."""
        if request.method == "GET":
            return Response(ApiKeySerializer(tokens.user_keys(request.user), many=True).data)
        return self._issue(request.user, self._parse(OwnApiKeyCreateSerializer))

    @extend_schema(request=AccountReasonSerializer, responses=ApiKeySerializer, operation_id="users_me_keys_revoke",
                   parameters=[OpenApiParameter("key_id", int, OpenApiParameter.PATH)])
    @action(detail=False, methods=["delete"], url_path=r"me/keys/(?P<key_id>[0-9]+)")
    def revoke_my_key(self, request: Request, key_id: str = "") -> Response:
        """Revoke one of your API keys."""
        key = self._key(request.user, key_id)
        data = self._parse(AccountReasonSerializer)
        return Response(ApiKeySerializer(tokens.revoke_api_key(key, actor=request.user, **data)).data)

    @extend_schema(request=OwnPasswordSerializer, responses=MeSerializer)
    @action(detail=False, methods=["post"], url_path="me/password")
    def password(self, request: Request) -> Response:
        """Change your password (the current one is required); clears "must change password"."""
        data = self._parse(OwnPasswordSerializer)
        user = accounts.change_own_password(request.user, **data)
        if hasattr(request._request, "session"):  # keep this session signed in; others end with the old hash
            update_session_auth_hash(request._request, user)
            request._request.session[MUST_CHANGE_PASSWORD_SESSION_KEY] = False
        return Response(MeSerializer(user, context={"request": request}).data)

    # -- administrators

    def list(self, request: Request) -> Response:
        self._require_reader()
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(AccountSerializer(page, many=True, context=self.get_serializer_context()).data)

    def retrieve(self, request: Request, username: str = "") -> Response:
        self._require_reader()
        return self._account(self._user(username))

    def create(self, request: Request) -> Response:
        require_role(request.user, Role.ADMIN, doing="create users")
        user = accounts.create_user(actor=request.user, **self._parse(UserCreateSerializer))
        return self._account(user, status.HTTP_201_CREATED)

    @extend_schema(request=AccountReasonSerializer, responses=AccountSerializer)
    @action(detail=True, methods=["post"])
    def deactivate(self, request: Request, username: str = "") -> Response:
        """Stop the account at once: sessions, API tokens (revoked) and signing."""
        require_role(request.user, Role.ADMIN, doing="deactivate users")
        data = self._parse(AccountReasonSerializer)
        return self._account(accounts.deactivate_user(self._user(username), actor=request.user, **data))

    @extend_schema(request=AccountReasonSerializer, responses=AccountSerializer)
    @action(detail=True, methods=["post"])
    def reactivate(self, request: Request, username: str = "") -> Response:
        require_role(request.user, Role.ADMIN, doing="reactivate users")
        data = self._parse(AccountReasonSerializer)
        return self._account(accounts.reactivate_user(self._user(username), actor=request.user, **data))

    @extend_schema(request=PasswordResetSerializer, responses=AccountSerializer)
    @action(detail=True, methods=["post"], url_path="password")
    def reset_password(self, request: Request, username: str = "") -> Response:
        """Set another user's password: they must change it before signing; their tokens are revoked."""
        require_role(request.user, Role.ADMIN, doing="reset passwords")
        data = self._parse(PasswordResetSerializer)
        return self._account(accounts.reset_password(self._user(username), actor=request.user, **data))

    @extend_schema(request=RoleSerializer, responses=AccountSerializer)
    @action(detail=True, methods=["post"])
    def roles(self, request: Request, username: str = "") -> Response:
        """Grant a global role."""
        require_role(request.user, Role.ADMIN, doing="grant roles")
        data = self._parse(RoleSerializer)
        return self._account(accounts.grant_role(self._user(username), actor=request.user, **data))

    @extend_schema(request=AccountReasonSerializer, responses={200: AccountSerializer},
                   parameters=[OpenApiParameter("role", str, OpenApiParameter.PATH, enum=ROLE_NAMES)])
    @action(detail=True, methods=["delete"], url_path=r"roles/(?P<role>[a-z_]+)")
    def revoke_role(self, request: Request, username: str = "", role: str = "") -> Response:
        """Revoke a global role (the reason may be sent as a JSON body)."""
        require_role(request.user, Role.ADMIN, doing="revoke roles")
        data = self._parse(AccountReasonSerializer)
        return self._account(accounts.revoke_role(self._user(username), actor=request.user, role=role, **data))

    @extend_schema(methods=["get"], request=None, responses=ApiKeySerializer(many=True))
    @extend_schema(methods=["delete"], request=AccountReasonSerializer, responses={204: None})
    @action(detail=True, methods=["get", "delete"], pagination_class=None)
    def tokens(self, request: Request, username: str = "") -> Response:
        """The user's API keys, revoked and expired ones too (never the keys); DELETE revokes every live one."""
        user = self._user_for_tokens(username)
        if request.method == "GET":
            return Response(ApiKeySerializer(tokens.user_keys(user), many=True).data)
        data = self._parse(AccountReasonSerializer)
        tokens.revoke_tokens(user, actor=request.user, **data)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=AccountReasonSerializer, responses=ApiKeySerializer, operation_id="users_tokens_revoke_one",
                   parameters=[OpenApiParameter("key_id", int, OpenApiParameter.PATH)])
    @action(detail=True, methods=["delete"], url_path=r"tokens/(?P<key_id>[0-9]+)")
    def revoke_key(self, request: Request, username: str = "", key_id: str = "") -> Response:
        """Revoke one API key of the user."""
        require_role(request.user, Role.ADMIN, doing="revoke other users' API keys")
        key = self._key(self._user(username), key_id)
        data = self._parse(AccountReasonSerializer)
        return Response(ApiKeySerializer(tokens.revoke_api_key(key, actor=request.user, **data)).data)

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    @action(detail=True, methods=["post"])
    def keys(self, request: Request, username: str = "") -> Response:
        """Make an API key for a service account (administrators; people make their own under me/keys)."""
        require_role(request.user, Role.ADMIN, doing="create API keys for service accounts")
        return self._issue(self._user(username), self._parse(ApiKeyCreateSerializer))

    @extend_schema(request=ServiceAccountCreateSerializer, responses={201: AccountSerializer})
    @action(detail=False, methods=["post"], url_path="service-accounts")
    def service_accounts(self, request: Request) -> Response:
        """Create a service account: no password, never signs, authenticates with API keys."""
        require_role(request.user, Role.ADMIN, doing="create service accounts")
        data = self._parse(ServiceAccountCreateSerializer)
        return self._account(accounts.create_service_account(actor=request.user, **data), status.HTTP_201_CREATED)

    # -- plumbing

    def _require_reader(self) -> None:
        user = self.request.user
        if not (has_role(user, Role.ADMIN) or Role.AUDITOR.value in user_roles(user)):
            require_role(user, Role.ADMIN, doing="read user accounts")

    def _user(self, username: str) -> Any:
        user = self.get_queryset().filter(username=username).first()
        if user is None:
            raise NotFound(f"no user {username!r}", field="username")
        return user

    def _user_for_tokens(self, username: str) -> Any:
        """Your own tokens, or (administrators; auditors read) anyone's."""
        if username == self.request.user.get_username():
            return self._user(username)
        if self.request.method == "GET":
            self._require_reader()
        else:
            require_role(self.request.user, Role.ADMIN, doing="revoke other users' API tokens")
        return self._user(username)

    def _key(self, owner: Any, key_id: str) -> ApiKey:
        key = ApiKey.objects.filter(owner=owner, pk=int(key_id)).select_related("owner").first()
        if key is None:
            raise NotFound(f"no API key {key_id} of user {owner.get_username()!r}", field="key_id")
        return key

    def _issue(self, owner: Any, data: dict[str, Any]) -> Response:
        row, key = tokens.create_api_key(owner, actor=self.request.user, **data)
        body = {"key": key, **ApiKeySerializer(row).data}
        return Response(body, status=status.HTTP_201_CREATED)

    def _parse(self, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def _account(self, user: Any, http_status: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=user.pk)  # re-read: roles and memberships as committed
        return Response(AccountSerializer(fresh, context=self.get_serializer_context()).data, status=http_status)
