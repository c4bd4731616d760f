"""API: a program's memberships and roles (/programs/<slug>/memberships/), and what per-program roles mean for
API keys and the production bundle fetch."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from governance.actions import create_program, release_version
from governance.actions.accounts import create_service_account
from governance.actions.memberships import revoke_membership, set_program_roles
from governance.actions.tokens import create_api_key
from governance.models import AuditEvent, ProgramMembership
from tests.governance.api_support import V1, error, results
from tests.governance.conftest import demo_spec

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db

MEMBERSHIPS = f"{V1}/programs/support/memberships/"


@pytest.fixture(autouse=True)
def fresh_throttles():
    cache.clear()
    yield
    cache.clear()


def keyed(api, key: str):
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_members_read_the_roles_outsiders_get_404(api, program, reviewer1, outsider, auditor):
    listed = results(api(reviewer1).get(MEMBERSHIPS))
    roles = {m["user"]["username"]: m["roles"] for m in listed}
    assert roles["author"] == ["author"] and roles["reviewer1"] == ["reviewer"] and roles["releaser"] == ["releaser"]
    assert listed[0]["source"] == "manual" and set(listed[0]) == {"user", "roles", "source", "granted_by",
                                                                  "created_at", "updated_at"}
    assert api(reviewer1).get(f"{MEMBERSHIPS}reviewer1/").json()["roles"] == ["reviewer"]
    assert error(api(outsider).get(MEMBERSHIPS)) == {"status": 404, "code": "not_found",
                                                     "detail": "no program 'support'"}
    assert api(auditor).get(MEMBERSHIPS).status_code == 200  # a global auditor reads every program
    assert error(api(reviewer1).get(f"{MEMBERSHIPS}outsider/"))["detail"] == \
        "user 'outsider' is not a member of program support"


def test_an_admin_grants_changes_and_revokes(api, program, admin, users):
    client = api(admin)
    granted = client.post(MEMBERSHIPS, {"username": "auditor", "roles": ["auditor", "reviewer"], "reason": "QA"},
                          format="json")
    assert granted.status_code == 201, granted.content
    assert (granted.json()["roles"], granted.json()["granted_by"]["username"]) == (["auditor", "reviewer"], "admin")
    changed = client.patch(f"{MEMBERSHIPS}auditor/", {"roles": ["auditor"], "reason": "no reviews"}, format="json")
    assert changed.status_code == 200 and changed.json()["roles"] == ["auditor"]
    defaults = client.post(MEMBERSHIPS, {"username": "outsider"}, format="json")
    assert defaults.json()["roles"] == ["author", "releaser", "reviewer"], "no roles named: the default roles"
    assert client.delete(f"{MEMBERSHIPS}auditor/", {"reason": "done"}, format="json").status_code == 204
    assert not ProgramMembership.objects.filter(program=program, user=users["auditor"]).exists()
    events = AuditEvent.objects.filter(program=program, action__startswith="program.member").order_by("id")
    assert [(e.action, e.reason) for e in events][-4:] == [
        ("program.member_added", "QA"), ("program.member_roles_changed", "no reviews"),
        ("program.member_added", ""), ("program.member_removed", "done")]


def test_refusals_are_400_403_404_409(api, program, admin, author, reviewer1):
    assert error(api(author).post(MEMBERSHIPS, {"username": "auditor", "roles": ["reviewer"]}, format="json")) == {
        "status": 403, "code": "permission_denied",
        "detail": "user 'author' needs the administrator role to manage roles on program support"}
    assert api(reviewer1).patch(f"{MEMBERSHIPS}reviewer1/", {"roles": ["releaser"]},
                                format="json").status_code == 403
    client = api(admin)
    bad_role = error(client.post(MEMBERSHIPS, {"username": "auditor", "roles": ["admin"]}, format="json"))
    assert bad_role["status"] == 400 and bad_role["field"] == "roles"
    not_a_list = error(client.patch(f"{MEMBERSHIPS}reviewer1/", {"roles": "reviewer"}, format="json"))
    assert not_a_list["status"] == 400 and not_a_list["field"] == "roles"
    missing = error(client.patch(f"{MEMBERSHIPS}reviewer1/", {}, format="json"))
    assert missing["status"] == 400 and missing["field"] == "roles"
    nobody = error(client.post(MEMBERSHIPS, {"username": "ghost"}, format="json"))
    assert nobody["status"] == 400 and nobody["field"] == "username"
    assert error(client.post(MEMBERSHIPS, {"username": "reviewer1"}, format="json")) == {
        "status": 409, "code": "illegal_transition", "detail": "user 'reviewer1' is already a member of support"}
    assert error(client.patch(f"{MEMBERSHIPS}reviewer1/", {"roles": ["reviewer"]}, format="json"))["status"] == 409
    assert error(client.delete(f"{MEMBERSHIPS}author/"))["detail"] == "user 'author' owns support and cannot be removed"
    assert client.delete(f"{MEMBERSHIPS}ghost/").status_code == 404
    assert client.get(f"{V1}/programs/nope/memberships/").status_code == 404
    assert AuditEvent.objects.filter(action__startswith="program.member").count() == 0


@pytest.fixture
def billing(users, program):
    return create_program(actor=users["author"], slug="billing", name="Billing", spec=demo_spec(),
                          members=[users["reviewer1"]])


def test_a_users_key_acts_with_that_users_roles_on_each_program(api, admin, users, program, billing, make_cr, pw):
    """reviewer1 reviews support and writes billing; their API key does exactly that."""
    reviewer1 = users["reviewer1"]
    set_program_roles(billing, reviewer1, ["author"], actor=admin, reason="writes billing")
    _, key = create_api_key(reviewer1, actor=reviewer1, name="laptop", password=pw(reviewer1))
    client = keyed(api, key)
    assert client.post(f"{V1}/versions/", {"program": "billing"}, format="json").status_code == 201
    refused = error(client.post(f"{V1}/versions/", {"program": "support"}, format="json"))
    assert refused == {"status": 403, "code": "permission_denied", "detail": "user 'reviewer1' needs the author "
                       "role to create prompt versions on program support"}
    cr = make_cr()
    approved = client.post(f"{V1}/change-requests/{cr.pk}/approve/",
                           {"content_hash": cr.version.content_hash, "password": pw(reviewer1)}, format="json")
    assert approved.status_code == 200, approved.content
    _, scoped = create_api_key(reviewer1, actor=reviewer1, name="billing only", password=pw(reviewer1),
                               programs=[billing])
    assert keyed(api, scoped).get(MEMBERSHIPS).status_code == 403  # the key's scope, before any role
    assert keyed(api, scoped).get(f"{V1}/programs/billing/memberships/").status_code == 200


@pytest.fixture
def released(signing, make_approved, releaser):
    release_version(make_approved(), actor=releaser, reason="go live")


def test_bundle_fetch_follows_the_membership_of_the_program(api, released, admin, program, billing):
    """A service account's key scoped to support fetches support's bundle while it is a member (no role needed),
    and is refused at once when the membership is revoked; another program is out of its scope."""
    service = create_service_account(actor=admin, username="svc-support", first_name="Support service")
    set_program_roles(program, service, [], actor=admin, reason="production fetch")
    _, key = create_api_key(service, actor=admin, name="prod", bundle_only=True, programs=[program])
    client = keyed(api, key)
    bundle = f"{V1}/programs/support/releases/production/bundle"
    assert client.get(bundle).status_code == 200
    assert client.get(bundle).status_code == 200  # from the per-process memo
    assert client.get(f"{V1}/programs/billing/releases/production/bundle").status_code == 403
    revoke_membership(program, service, actor=admin, reason="service retired from support")
    assert client.get(bundle).status_code == 404  # the memo forgot the grant with the membership
