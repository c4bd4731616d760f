"""API for accounts: administrators create users, grant and revoke roles, reset passwords (which revokes the
user's tokens: the old key gets 401), deactivate and revoke tokens; others get 403; 400 names the field; 409
for an illegal step. Every change is audited."""

from __future__ import annotations

import pytest

from governance.actions.accounts import check_can_sign
from governance.actions.tokens import active_keys, rotate_token
from governance.errors import PermissionDenied
from governance.models import AuditEvent
from governance.permissions import has_role
from tests.governance.api_support import V1, error, results
from tests.governance.conftest import AuditLog, password

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db

ADMIN_SET = "admin-chosen-pass-1"


def token_client(api, key: str):
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_non_admins_get_403_on_every_account_endpoint(api, users):
    reviewer = api(users["reviewer1"])
    calls = [
        reviewer.get(f"{V1}/users/"),
        reviewer.get(f"{V1}/users/author/"),
        reviewer.post(f"{V1}/users/", {"username": "x", "password": ADMIN_SET}, format="json"),
        reviewer.post(f"{V1}/users/author/roles/", {"role": "reviewer"}, format="json"),
        reviewer.delete(f"{V1}/users/author/roles/author/"),
        reviewer.post(f"{V1}/users/author/password/", {"password": ADMIN_SET}, format="json"),
        reviewer.post(f"{V1}/users/author/deactivate/", {}, format="json"),
        reviewer.delete(f"{V1}/users/author/tokens/"),
    ]
    assert [c.status_code for c in calls] == [403] * len(calls)
    assert error(calls[3])["detail"] == "user 'reviewer1' needs the administrator role to grant roles"
    assert not has_role(users["author"], "reviewer")
    assert api().get(f"{V1}/users/").status_code == 403  # anonymous


def test_admin_grants_and_revokes_a_role_audited(api, users, admin):
    log = AuditLog()
    granted = api(admin).post(f"{V1}/users/author/roles/", {"role": "reviewer", "reason": "board"}, format="json")
    assert granted.status_code == 200 and granted.json()["roles"] == ["author", "reviewer"]
    assert has_role(users["author"], "reviewer")
    again = api(admin).post(f"{V1}/users/author/roles/", {"role": "reviewer"}, format="json")
    assert error(again)["status"] == 409 and error(again)["detail"] == "user 'author' already has the reviewer role"
    revoked = api(admin).delete(f"{V1}/users/author/roles/reviewer/", {"reason": "left the board"}, format="json")
    assert revoked.status_code == 200 and revoked.json()["roles"] == ["author"]
    assert log.actions() == ["user.role_granted", "user.role_revoked"]
    assert [e.actor for e in log.events()] == [admin, admin]


def test_password_reset_revokes_the_old_token_and_blocks_signing(api, users, admin):
    reviewer = users["reviewer1"]
    old_key = rotate_token(actor=reviewer, password=password(reviewer))[1]
    assert token_client(api, old_key).get(f"{V1}/users/me/").status_code == 200

    response = api(admin).post(f"{V1}/users/reviewer1/password/", {"password": ADMIN_SET, "reason": "locked out"},
                               format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["must_change_password"], body["password_set_by"]["username"], body["tokens"]) == (True, "admin", [])
    assert token_client(api, old_key).get(f"{V1}/users/me/").status_code == 401
    event = AuditEvent.objects.get(action="user.password_reset")
    assert event.reason == "locked out" and ADMIN_SET not in str(event.after)
    reviewer.refresh_from_db()
    with pytest.raises(PermissionDenied, match="must change the password an administrator set before signing"):
        check_can_sign(reviewer)

    me = api(reviewer)
    assert me.get(f"{V1}/users/me/").json()["must_change_password"] is True
    wrong = me.post(f"{V1}/users/me/password/", {"old_password": "guess", "new_password": "mine-only-pass-9"},
                    format="json")
    assert (error(wrong)["status"], error(wrong)["field"]) == (403, "old_password")
    changed = me.post(f"{V1}/users/me/password/", {"old_password": ADMIN_SET, "new_password": "mine-only-pass-9"},
                      format="json")
    assert changed.status_code == 200 and changed.json()["must_change_password"] is False
    reviewer.refresh_from_db()
    check_can_sign(reviewer)


def test_bad_input_is_400_naming_the_field(api, users, admin):
    client = api(admin)
    log = AuditLog()
    missing = client.post(f"{V1}/users/", {"password": ADMIN_SET}, format="json")
    assert (error(missing)["status"], error(missing)["field"]) == (400, "username")
    short = client.post(f"{V1}/users/", {"username": "carol", "password": "x"}, format="json")
    assert (error(short)["status"], error(short)["field"]) == (400, "password")
    role = client.post(f"{V1}/users/author/roles/", {"role": "boss"}, format="json")
    assert (error(role)["status"], error(role)["field"]) == (400, "role")
    taken = client.post(f"{V1}/users/", {"username": "author", "password": ADMIN_SET}, format="json")
    assert (error(taken)["status"], error(taken)["field"]) == (400, "username")
    assert client.post(f"{V1}/users/nobody/roles/", {"role": "author"}, format="json").status_code == 404
    assert log.actions() == []


def test_admin_creates_lists_and_deactivates_users(api, users, admin):
    client = api(admin)
    created = client.post(f"{V1}/users/", {"username": "carol", "password": ADMIN_SET, "roles": ["reviewer"],
                                           "first_name": "Carol"}, format="json")
    assert created.status_code == 201
    assert {k: created.json()[k] for k in ("username", "name", "roles", "active", "must_change_password")} == {
        "username": "carol", "name": "Carol", "roles": ["reviewer"], "active": True, "must_change_password": True}
    assert "carol" in [u["username"] for u in results(client.get(f"{V1}/users/"))]
    assert api(users["auditor"]).get(f"{V1}/users/carol/").status_code == 200  # auditors read

    reviewer = users["reviewer1"]
    key = rotate_token(actor=reviewer, password=password(reviewer))[1]
    listed = client.get(f"{V1}/users/reviewer1/tokens/").json()
    assert [(t["name"], t["active"]) for t in listed] == [("default", True)] and key not in str(listed)
    off = client.post(f"{V1}/users/reviewer1/deactivate/", {"reason": "left"}, format="json")
    assert off.status_code == 200 and off.json()["active"] is False
    assert token_client(api, key).get(f"{V1}/users/me/").status_code == 401
    assert not active_keys(reviewer).exists()
    self_off = client.post(f"{V1}/users/admin/deactivate/", {}, format="json")
    assert (error(self_off)["status"], error(self_off)["detail"]) == (409, "you cannot deactivate your own account")
    assert client.post(f"{V1}/users/reviewer1/reactivate/", {}, format="json").json()["active"] is True


def test_admin_revokes_a_users_token(api, users, admin):
    reviewer = users["reviewer1"]
    key = rotate_token(actor=reviewer, password=password(reviewer))[1]
    assert api(admin).delete(f"{V1}/users/reviewer1/tokens/", {"reason": "leaked"}, format="json").status_code == 204
    assert token_client(api, key).get(f"{V1}/users/me/").status_code == 401
    again = api(admin).delete(f"{V1}/users/reviewer1/tokens/")
    assert error(again)["status"] == 409
    assert AuditEvent.objects.filter(action="api_token.revoked").count() == 1
