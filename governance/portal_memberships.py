"""Portal: the "Members and roles" section of a program page (templates/governance/_members.html) posts here.

Thin views over governance.actions.memberships, one action per POST: administrators add members with the roles
they tick and change or revoke anyone's roles; a program's owner adds members with their default roles and
removes members. Forms check shape only; a bad value is the portal's 400 page naming the field, a refusal its
403/409 page (`portal_view`). After a change the program page is shown again at the section.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from governance.actions import memberships as membership_actions
from governance.errors import InvalidInput, NotFound
from governance.models import PROGRAM_ROLES, Program, Role
from governance.views import _program, portal_view

User = get_user_model()
ROLE_CHOICES = [(role, Role(role).label) for role in PROGRAM_ROLES]


class RolesForm(forms.Form):
    roles = forms.MultipleChoiceField(choices=ROLE_CHOICES, required=False, widget=forms.CheckboxSelectMultiple)
    reason = forms.CharField(required=False, max_length=5000)


class AddMemberForm(RolesForm):
    username = forms.RegexField(r"^[\w.@+-]+$", max_length=150)


@portal_view
@require_POST
def member_add(request: HttpRequest, slug: str) -> HttpResponse:
    """An administrator grants the ticked roles; the owner (who may not choose roles) adds with the defaults."""
    program = _program(request, slug)
    data = _valid(AddMemberForm(request.POST))
    user = User.objects.filter(username=data["username"]).first()
    if user is None:
        raise InvalidInput(f"no user {data['username']!r}", field="username")
    if membership_actions.may_manage_roles(program, request.user):
        membership = membership_actions.grant_membership(program, user, actor=request.user, roles=data["roles"],
                                                         reason=data["reason"])
    else:
        membership = membership_actions.add_member(program, actor=request.user, user=user, reason=data["reason"])
    messages.success(request, f"{user.username} is now a member of {program.slug} ({_roles(membership.roles)}).")
    return _back(program)


@portal_view
@require_POST
def member_roles(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    program = _program(request, slug)
    data = _valid(RolesForm(request.POST))
    membership = membership_actions.change_program_roles(program, _user(username), data["roles"],
                                                         actor=request.user, reason=data["reason"])
    messages.success(request, f"{username} now holds {_roles(membership.roles)} on {program.slug}.")
    return _back(program)


@portal_view
@require_POST
def member_remove(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    program = _program(request, slug)
    data = _valid(RolesForm(request.POST))
    membership_actions.remove_member(program, actor=request.user, user=_user(username), reason=data["reason"])
    messages.success(request, f"{username} is no longer a member of {program.slug}.")
    return _back(program)


def _valid(form: forms.Form) -> dict[str, Any]:
    """The form's cleaned data, or InvalidInput (the portal's 400 page) naming the first bad field."""
    if form.is_valid():
        return form.cleaned_data
    field, errors = next(iter(form.errors.items()))
    raise InvalidInput(f"{field}: {' '.join(errors)}", field=field)


def _user(username: str) -> Any:
    user = User.objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


def _roles(roles: list[str]) -> str:
    return ", ".join(roles) if roles else "no role: read access only"


def _back(program: Program) -> HttpResponse:
    return redirect(reverse("program_detail", args=[program.slug]) + "#members-h")
