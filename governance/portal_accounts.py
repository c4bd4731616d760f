"""Portal pages for principals: administrators manage accounts (roles, activity, passwords, tokens,
memberships); every user changes their own password, and must when an administrator set it.

Thin views over governance.actions.accounts (and programs' membership actions): one action per POST, forms
check shape only, InvalidInput re-renders the form with the message on its field (400), other domain errors
become the portal's error page (403/409) through `portal_view`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from governance.actions import accounts
from governance.actions import programs as program_actions
from governance.actions import tokens
from governance.errors import AuthenticationFailed, InvalidInput, NotFound
from governance.forms import LoginForm
from governance.models import AccountState, ApiKey, AuditEvent, Program, Role
from governance.models.accounts import MUST_CHANGE_PASSWORD_SESSION_KEY
from governance.permissions import has_role, require_role, user_roles, visible_programs
from governance.portal_pages import search_page
from governance.views import field_of, portal_view

User = get_user_model()
ROLE_CHOICES = Role.choices


# --- forms (shape only) -------------------------------------------------------------------------------------


def _password_field(label: str, autocomplete: str, help_text: str = "") -> forms.CharField:
    return forms.CharField(label=label, strip=False, help_text=help_text,
                           widget=forms.PasswordInput(attrs={"autocomplete": autocomplete}))


def _reason_field() -> forms.CharField:
    return forms.CharField(required=False, max_length=5000, label="Reason",
                           help_text="Recorded in the audit trail.")


class CreateUserForm(forms.Form):
    username = forms.RegexField(r"^[\w.@+-]+$", max_length=150,
                                help_text="Letters, digits and @ . + - _ only.")
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    email = forms.EmailField(required=False)
    password = _password_field("Initial password", "new-password",
                               "The user must change it before they can sign.")
    roles = forms.MultipleChoiceField(choices=ROLE_CHOICES, required=False, widget=forms.CheckboxSelectMultiple)


class ReasonForm(forms.Form):
    reason = _reason_field()


class ResetPasswordForm(forms.Form):
    prefix = "reset"
    password = _password_field("New password", "new-password",
                               "The user must change it before signing; their API tokens are revoked.")
    reason = _reason_field()


class RoleForm(forms.Form):
    prefix = "role"
    role = forms.ChoiceField(choices=ROLE_CHOICES)
    reason = _reason_field()


class MembershipForm(forms.Form):
    prefix = "member"
    program = forms.ModelChoiceField(queryset=Program.objects.order_by("slug"), to_field_name="slug")
    reason = _reason_field()


class ServiceAccountForm(forms.Form):
    username = forms.RegexField(r"^[\w.@+-]+$", max_length=150,
                                help_text="Letters, digits and @ . + - _ only. A service account has no password.")
    first_name = forms.CharField(max_length=150, required=False, label="Name")
    roles = forms.MultipleChoiceField(choices=ROLE_CHOICES, required=False, widget=forms.CheckboxSelectMultiple)


class ApiKeyForm(forms.Form):
    """A new API key of `owner`: its name, scope and lifetime (the programs offered are those it may see)."""

    prefix = "key"
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. \u201cproduction fetch\u201d.")
    programs = forms.ModelMultipleChoiceField(queryset=Program.objects.none(), to_field_name="slug", required=False,
                                              widget=forms.CheckboxSelectMultiple,
                                              help_text="None ticked: every program the owner may see.")
    bundle_only = forms.BooleanField(required=False, label="Only fetches release bundles")
    expires_in_days = forms.IntegerField(min_value=1, required=False, label="Expires in (days)",
                                         help_text="Empty: the default lifetime.")

    def __init__(self, *args: Any, owner: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["programs"].queryset = visible_programs(owner).order_by("slug")


class OwnApiKeyForm(ApiKeyForm):
    password = _password_field("Your password", "current-password", "Re-enter your password to create a key.")


class RevokeKeyForm(forms.Form):
    key_id = forms.IntegerField(widget=forms.HiddenInput)
    reason = _reason_field()


class OwnPasswordForm(forms.Form):
    old_password = _password_field("Current password", "current-password")
    new_password = _password_field("New password", "new-password")
    new_password_again = _password_field("New password, again", "new-password")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("new_password") and data.get("new_password") != data.get("new_password_again"):
            self.add_error("new_password_again", "The two new passwords differ.")
        return data


# --- login with lockout --------------------------------------------------------------------------------------


class LockoutLoginView(auth_views.LoginView):
    """Django's login, refusing a username locked out after repeated failures (429, audited when it locks;
    governance.actions.accounts.record_login_failure has the back-off)."""

    template_name = "governance/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username = request.POST.get("username", "")
        remaining = accounts.login_lockout_remaining(username)
        if remaining:
            return self._locked_out(username, remaining)
        response = super().post(request, *args, **kwargs)
        if response.status_code == 302:
            accounts.clear_login_failures(username)
            return response
        locked_for = accounts.record_login_failure(username)
        return self._locked_out(username, locked_for) if locked_for else response

    def _locked_out(self, username: str, seconds: int) -> HttpResponse:
        messages.error(self.request, f"Too many failed logins for {username!r}: try again in {seconds} seconds.")
        form = self.get_form_class()(self.request, initial={"username": username})
        response = self.render_to_response(self.get_context_data(form=form))
        response.status_code = 429
        return response


# --- must change password -----------------------------------------------------------------------------------


class MustChangePasswordMiddleware:
    """After login, a user whose password an administrator set sees only the page that changes it (Part 11:
    the owner must choose the password that signs). The flag is put in the session at login (no query per
    page). The API is not redirected: signing refuses such an account (`check_can_sign`)."""

    EXEMPT_PREFIXES = ("/api/", "/static/", "/logout/")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(self.EXEMPT_PREFIXES) or request.path == reverse("password_change"):
            return self.get_response(request)
        if getattr(request, "session", {}).get(MUST_CHANGE_PASSWORD_SESSION_KEY):
            return HttpResponseRedirect(f"{reverse('password_change')}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)


@portal_view
@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    """Change your own password (the current one is required)."""
    forced = accounts.must_change_password(request.user)
    form = OwnPasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = accounts.change_own_password(request.user, old_password=form.cleaned_data["old_password"],
                                                new_password=form.cleaned_data["new_password"])
        except InvalidInput as exc:
            form.add_error(field_of(exc, form), exc.message)
        except AuthenticationFailed as exc:
            form.add_error("old_password", exc.message)
        else:
            update_session_auth_hash(request, user)  # this session stays signed in
            request.session[MUST_CHANGE_PASSWORD_SESSION_KEY] = False
            messages.success(request, "Your password was changed.")
            return redirect(_next_url(request))
    status = 400 if request.method == "POST" else 200
    return render(request, "governance/accounts_password.html", {"form": form, "forced": forced,
                                                                 "next": _next_url(request)}, status=status)


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return reverse("dashboard")


# --- administrators -----------------------------------------------------------------------------------------


def _require_reader(user: Any) -> None:
    """Administrators manage accounts; auditors may read them."""
    if Role.AUDITOR.value not in user_roles(user):
        require_role(user, Role.ADMIN, doing="see user accounts")


def _account(username: str) -> Any:
    return get_object_or_404(User.objects.prefetch_related("groups", "programs"), username=username)


@portal_view
@require_GET
def account_list(request: HttpRequest) -> HttpResponse:
    _require_reader(request.user)
    page, query = search_page(request, User.objects.order_by("username").prefetch_related("groups"),
                              ("username", "first_name", "last_name", "email"), per_page=50)
    users = list(page.object_list)
    states = {s.user_id: s for s in AccountState.objects.filter(user__in=users)}
    for user in users:
        user.state = states.get(user.pk)
        user.role_list = sorted(g.name for g in user.groups.all())
    return render(request, "governance/accounts_list.html",
                  {"users": users, "page": page, "q": query, "can_manage": has_role(request.user, Role.ADMIN)})


@portal_view
@require_http_methods(["GET", "POST"])
def account_create(request: HttpRequest) -> HttpResponse:
    require_role(request.user, Role.ADMIN, doing="create users")
    return _create_account(request, CreateUserForm(request.POST or None), accounts.create_user,
                           "User {username} created; they must change the password before signing.")


def _detail_context(request: HttpRequest, user: Any, **posted: Any) -> dict[str, Any]:
    member_of = list(user.program_memberships.select_related("program").order_by("program__slug"))
    return {
        "account": user, "state": accounts.account_state(user), "tokens": list(tokens.active_keys(user)),
        "roles": sorted(g.name for g in user.groups.all()), "member_of": member_of,
        "events": AuditEvent.objects.filter(object_type="User", object_id=str(user.pk)).order_by("-id")[:50],
        "can_manage": has_role(request.user, Role.ADMIN), "is_self": user.pk == request.user.pk,
        "reason_form": posted.get("reason_form") or ReasonForm(),
        "reset_form": posted.get("reset_form") or ResetPasswordForm(),
        "role_form": posted.get("role_form") or RoleForm(),
        "member_form": posted.get("member_form") or MembershipForm(),
        "keys": tokens.user_keys(user),
        "key_form": posted.get("key_form") or ApiKeyForm(owner=user),
    }


@portal_view
@require_GET
def account_detail(request: HttpRequest, username: str) -> HttpResponse:
    _require_reader(request.user)
    user = _account(username)
    return render(request, "governance/accounts_detail.html", _detail_context(request, user))


# Each POST on an account: the form it reads, the context name it re-renders under, the action and its message.
ACCOUNT_ACTIONS: dict[str, tuple[type[forms.Form], str, Callable[..., Any], Callable[[Any, dict[str, Any]], str]]] = {
    "deactivate": (ReasonForm, "reason_form", lambda u, a, d: accounts.deactivate_user(u, actor=a, **d),
                   lambda u, d: f"{u.username} is deactivated: sessions and API tokens stopped."),
    "reactivate": (ReasonForm, "reason_form", lambda u, a, d: accounts.reactivate_user(u, actor=a, **d),
                   lambda u, d: f"{u.username} is active again."),
    "reset-password": (ResetPasswordForm, "reset_form", lambda u, a, d: accounts.reset_password(u, actor=a, **d),
                       lambda u, d: f"Password of {u.username} reset: they must change it before signing; "
                                    "their API tokens are revoked."),
    "revoke-tokens": (ReasonForm, "reason_form", lambda u, a, d: tokens.revoke_tokens(u, actor=a, **d),
                      lambda u, d: f"API tokens of {u.username} revoked."),
    "grant-role": (RoleForm, "role_form", lambda u, a, d: accounts.grant_role(u, actor=a, **d),
                   lambda u, d: f"{u.username} now has the {d['role']} role."),
    "revoke-role": (RoleForm, "role_form", lambda u, a, d: accounts.revoke_role(u, actor=a, **d),
                    lambda u, d: f"{u.username} no longer has the {d['role']} role."),
    "revoke-key": (RevokeKeyForm, "revoke_key_form",
                   lambda u, a, d: tokens.revoke_api_key(_owned_key(u, d["key_id"]), actor=a, reason=d["reason"]),
                   lambda u, d: f"API key {d['key_id']} of {u.username} revoked."),
    "add-member": (MembershipForm, "member_form",
                   lambda u, a, d: program_actions.add_member(d["program"], actor=a, user=u, reason=d["reason"]),
                   lambda u, d: f"{u.username} is now a member of {d['program'].slug}."),
    "remove-member": (MembershipForm, "member_form",
                      lambda u, a, d: program_actions.remove_member(d["program"], actor=a, user=u, reason=d["reason"]),
                      lambda u, d: f"{u.username} is no longer a member of {d['program'].slug}."),
}


def _owned_key(owner: Any, key_id: int) -> ApiKey:
    key = ApiKey.objects.select_related("owner").filter(pk=key_id, owner=owner).first()
    if key is None:
        raise NotFound(f"no API key {key_id} of user {owner.get_username()!r}")
    return key


@portal_view
@require_POST
def account_action(request: HttpRequest, username: str, action: str) -> HttpResponse:
    if action not in ACCOUNT_ACTIONS:
        raise NotFound(f"no account action {action!r}")
    require_role(request.user, Role.ADMIN, doing="manage user accounts")
    user = _account(username)
    form_class, name, act, done = ACCOUNT_ACTIONS[action]
    form = form_class(request.POST)
    if form.is_valid():
        try:
            act(user, request.user, dict(form.cleaned_data))
        except InvalidInput as exc:
            form.add_error(field_of(exc, form), exc.message)
        else:
            messages.success(request, done(user, form.cleaned_data))
            return redirect("account_detail", username=user.username)
    return render(request, "governance/accounts_detail.html", _detail_context(request, user, **{name: form}),
                  status=400)


# --- API keys -----------------------------------------------------------------------------------------------


def _key_created(request: HttpRequest, owner: Any, key: ApiKey, secret: str) -> HttpResponse:
    """The only page that ever shows the key; never cached, never put in a message (messages may be cookies)."""
    response = render(request, "governance/accounts_key_created.html",
                      {"owner": owner, "key": key, "secret": secret, "is_self": owner.pk == request.user.pk})
    response["Cache-Control"] = "no-store"
    return response


def _issue(request: HttpRequest, owner: Any, form: ApiKeyForm) -> HttpResponse | None:
    """Create the key the valid form describes; None (errors on the form) when the action refuses the input."""
    data = dict(form.cleaned_data)
    try:
        key, secret = tokens.create_api_key(owner, actor=request.user, **data)
    except InvalidInput as exc:
        form.add_error(field_of(exc, form), exc.message)
    except AuthenticationFailed as exc:
        form.add_error("password", exc.message)
    else:
        return _key_created(request, owner, key, secret)
    return None


@portal_view
@require_http_methods(["GET", "POST"])
def my_keys(request: HttpRequest) -> HttpResponse:
    """Your API keys; make a named, scoped, expiring one with your password."""
    form = OwnApiKeyForm(request.POST or None, owner=request.user)
    if request.method == "POST" and form.is_valid():
        created = _issue(request, request.user, form)
        if created is not None:
            return created
    return render(request, "governance/accounts_keys.html",
                  {"form": form, "keys": tokens.user_keys(request.user)},
                  status=400 if request.method == "POST" else 200)


@portal_view
@require_POST
def my_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey.objects.select_related("owner"), pk=key_id, owner=request.user)
    tokens.revoke_api_key(key, actor=request.user, reason=request.POST.get("reason", ""))
    messages.success(request, f"API key {key.prefix} revoked.")
    return redirect("my_keys")


@portal_view
@require_http_methods(["GET", "POST"])
def service_account_create(request: HttpRequest) -> HttpResponse:
    require_role(request.user, Role.ADMIN, doing="create service accounts")
    return _create_account(request, ServiceAccountForm(request.POST or None), accounts.create_service_account,
                           "Service account {username} created: give it program memberships and an API key.",
                           service=True)


def _create_account(request: HttpRequest, form: forms.Form, create: Callable[..., Any], done: str,
                    **context: Any) -> HttpResponse:
    """The create-user and create-service-account pages: the form, the action, the new account's page."""
    if request.method == "POST" and form.is_valid():
        try:
            user = create(actor=request.user, **form.cleaned_data)
        except InvalidInput as exc:
            form.add_error(field_of(exc, form), exc.message)
        else:
            messages.success(request, done.format(username=user.username))
            return redirect("account_detail", username=user.username)
    return render(request, "governance/accounts_create.html", {"form": form, **context},
                  status=400 if request.method == "POST" else 200)


@portal_view
@require_POST
def account_key_create(request: HttpRequest, username: str) -> HttpResponse:
    """An administrator makes a key for a service account (people make their own)."""
    require_role(request.user, Role.ADMIN, doing="create API keys for service accounts")
    user = _account(username)
    form = ApiKeyForm(request.POST, owner=user)
    if form.is_valid():
        created = _issue(request, user, form)
        if created is not None:
            return created
    return render(request, "governance/accounts_detail.html", _detail_context(request, user, key_form=form),
                  status=400)
