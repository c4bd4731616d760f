"""Portal account pages: administrators manage users through audited actions; a password an administrator set
must be changed by its owner right after login; a deactivated user's open session stops at once."""

from __future__ import annotations

import pytest
from django.test import Client

from governance.actions.accounts import check_can_sign, reset_password
from governance.errors import PermissionDenied
from governance.models import AuditEvent
from governance.permissions import has_role
from tests.governance.conftest import AuditLog, password

pytestmark = pytest.mark.django_db

ADMIN_SET = "admin-chosen-pass-1"


def signed_in(user, secret: str | None = None) -> Client:
    client = Client()
    assert client.login(username=user.get_username(), password=secret or password(user))
    return client


def test_accounts_pages_are_for_administrators(users, admin):
    reviewer = signed_in(users["reviewer1"])
    for url in ("/accounts/", "/accounts/author/", "/accounts/new/"):
        assert reviewer.get(url).status_code == 403, url
    response = reviewer.post("/accounts/author/grant-role/", {"role-role": "reviewer"})
    assert response.status_code == 403
    assert b"needs the administrator role to manage user accounts" in response.content
    assert not has_role(users["author"], "reviewer")

    page = signed_in(admin).get("/accounts/")
    assert page.status_code == 200
    assert b'href="/accounts/reviewer1/"' in page.content and b'href="/accounts/"' in page.content  # nav link
    assert signed_in(users["auditor"]).get("/accounts/reviewer1/").status_code == 200  # auditors read


def test_admin_grants_a_role_in_the_portal_audited(users, admin):
    client = signed_in(admin)
    log = AuditLog()
    response = client.post("/accounts/author/grant-role/", {"role-role": "reviewer", "role-reason": "board"})
    assert response.status_code == 302 and response["Location"] == "/accounts/author/"
    assert has_role(users["author"], "reviewer")
    assert log.actions() == ["user.role_granted"]
    assert log.events()[0].reason == "board"
    page = client.get("/accounts/author/")
    assert b"user.role_granted" in page.content

    again = client.post("/accounts/author/grant-role/", {"role-role": "reviewer"})
    assert again.status_code == 409 and b"User &#x27;author&#x27; already has the reviewer role." in again.content


def test_bad_input_rerenders_the_form_and_changes_nothing(users, admin):
    client = signed_in(admin)
    log = AuditLog()
    response = client.post("/accounts/reviewer1/reset-password/", {"reset-password": "short"})
    assert response.status_code == 400
    assert b"This password is too short" in response.content
    assert client.post("/accounts/reviewer1/grant-role/", {"role-role": "boss"}).status_code == 400
    assert log.actions() == []
    assert users["reviewer1"].check_password(password(users["reviewer1"]))


def test_a_password_reset_forces_the_owner_to_change_it_before_anything_else(users, admin):
    reviewer = users["reviewer1"]
    response = signed_in(admin).post("/accounts/reviewer1/reset-password/",
                                     {"reset-password": ADMIN_SET, "reset-reason": "locked out"})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="user.password_reset", object_id=str(reviewer.pk)).count() == 1

    client = signed_in(reviewer, ADMIN_SET)
    forced = client.get("/programs/")
    assert forced.status_code == 302 and forced["Location"] == "/account/password/?next=%2Fprograms%2F"
    page = client.get(forced["Location"])
    assert page.status_code == 200 and b"An administrator set your password" in page.content
    reviewer.refresh_from_db()
    with pytest.raises(PermissionDenied, match="must change the password an administrator set"):
        check_can_sign(reviewer)

    wrong = client.post("/account/password/", {"old_password": "guess", "new_password": "mine-only-pass-9",
                                               "new_password_again": "mine-only-pass-9"})
    assert wrong.status_code == 400 and b"wrong current password" in wrong.content
    done = client.post("/account/password/", {"old_password": ADMIN_SET, "new_password": "mine-only-pass-9",
                                              "new_password_again": "mine-only-pass-9", "next": "/programs/"})
    assert done.status_code == 302 and done["Location"] == "/programs/"
    assert client.get("/programs/").status_code == 200  # same session, no longer forced
    check_can_sign(type(reviewer).objects.get(pk=reviewer.pk))


def test_an_open_session_of_a_deactivated_user_stops(users, admin):
    client = signed_in(users["reviewer1"])
    assert client.get("/programs/").status_code == 200
    response = signed_in(admin).post("/accounts/reviewer1/deactivate/", {"reason": "left"})
    assert response.status_code == 302
    after = client.get("/programs/")
    assert after.status_code == 302 and after["Location"].startswith("/login/")


def test_an_open_session_ends_when_an_administrator_resets_the_password(users, admin):
    client = signed_in(users["reviewer1"])
    reset_password(users["reviewer1"], actor=admin, password=ADMIN_SET)
    after = client.get("/programs/")
    assert after.status_code == 302 and after["Location"].startswith("/login/")


def test_admin_creates_a_user_who_must_change_the_password(users, admin):
    client = signed_in(admin)
    response = client.post("/accounts/new/", {"username": "carol", "first_name": "Carol", "password": ADMIN_SET,
                                              "roles": ["reviewer"]})
    assert response.status_code == 302 and response["Location"] == "/accounts/carol/"
    taken = client.post("/accounts/new/", {"username": "carol", "password": ADMIN_SET})
    assert taken.status_code == 400 and b"user &#x27;carol&#x27; already exists" in taken.content
    carol = signed_in(type(admin).objects.get(username="carol"), ADMIN_SET)
    assert carol.get("/").status_code == 302


def test_repeated_failed_logins_lock_the_username_out_with_back_off_audited(users, settings):
    from datetime import timedelta

    from django.utils import timezone

    from governance.models import LoginThrottle

    settings.GOVERNANCE_LOGIN_MAX_FAILURES = 3
    settings.GOVERNANCE_LOGIN_LOCKOUT_SECONDS = 60
    reviewer = users["reviewer1"]
    client = Client()

    def attempt(secret: str):
        return client.post("/login/", {"username": "reviewer1", "password": secret})

    assert [attempt("guess").status_code for _ in range(2)] == [200, 200]
    locked = attempt("guess")
    assert locked.status_code == 429 and b"Too many failed logins" in locked.content
    assert attempt(password(reviewer)).status_code == 429  # even the right password, while locked out
    event = AuditEvent.objects.get(action="auth.locked_out")
    assert (event.object_id, event.after) == (str(reviewer.pk), {"username": "reviewer1", "seconds": 60,
                                                                 "lockout": 1})

    LoginThrottle.objects.update(locked_until=timezone.now() - timedelta(seconds=1))  # the minute passes
    assert [attempt("guess").status_code for _ in range(3)] == [200, 200, 429]
    assert AuditEvent.objects.filter(action="auth.locked_out").order_by("-id").first().after["seconds"] == 120

    LoginThrottle.objects.update(locked_until=timezone.now() - timedelta(seconds=1))
    assert attempt(password(reviewer)).status_code == 302
    assert not LoginThrottle.objects.exists()  # a successful login forgets the failures and the back-off


def test_a_person_makes_a_scoped_key_shown_once_and_revokes_it(users, program):
    from governance.models import ApiKey

    reviewer = users["reviewer1"]
    client = signed_in(reviewer)
    assert client.get("/account/keys/").status_code == 200
    wrong = client.post("/account/keys/", {"key-name": "ci", "key-password": "guess"})
    assert wrong.status_code == 400 and b"wrong password" in wrong.content
    made = client.post("/account/keys/", {"key-name": "ci", "key-programs": ["support"], "key-bundle_only": "on",
                                          "key-password": password(reviewer)})
    assert made.status_code == 200 and made["Cache-Control"] == "no-store"
    key = ApiKey.objects.get(owner=reviewer)
    secret = made.context["secret"]
    assert secret.encode() in made.content and key.bundle_only and [p.slug for p in key.programs.all()] == ["support"]
    listing = client.get("/account/keys/")
    assert key.prefix.encode() in listing.content and secret.encode() not in listing.content

    assert client.post(f"/account/keys/{key.pk}/revoke/").status_code == 302
    key.refresh_from_db()
    assert key.state == "revoked"
    assert signed_in(users["author"]).post(f"/account/keys/{key.pk}/revoke/").status_code == 404  # not theirs


def test_admin_creates_a_service_account_and_its_key(users, admin, program):
    from governance.models import ApiKey

    client = signed_in(admin)
    created = client.post("/accounts/new-service/", {"username": "svc-fetch", "first_name": "Fetch"})
    assert created.status_code == 302 and created["Location"] == "/accounts/svc-fetch/"
    assert client.post("/accounts/svc-fetch/add-member/", {"member-program": "support"}).status_code == 302
    page = client.get("/accounts/svc-fetch/")
    assert b"service account" in page.content and b"Reset password" not in page.content
    made = client.post("/accounts/svc-fetch/keys/", {"key-name": "prod", "key-bundle_only": "on"})
    assert made.status_code == 200 and made.context["secret"].startswith("pgk_")
    key = ApiKey.objects.get(owner__username="svc-fetch")
    assert key.created_by == admin
    person = client.post("/accounts/reviewer1/keys/", {"key-name": "x"})
    assert person.status_code == 403 and b"only they create their API keys" in person.content
    revoked = client.post("/accounts/svc-fetch/revoke-key/", {"key_id": key.pk})
    assert revoked.status_code == 302
    key.refresh_from_db()
    assert key.state == "revoked" and key.revoked_by == admin
