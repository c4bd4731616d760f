"""API: the requesting user, and API tokens (created or rotated with the password; a token never signs)."""

from __future__ import annotations

import hashlib

import pytest

from governance.models import ApiKey, AuditEvent
from tests.governance.api_support import V1, error

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db


def test_me(api, program, reviewer1, auditor):
    me = api(reviewer1).get(f"{V1}/users/me/").json()
    assert me == {"id": reviewer1.pk, "username": "reviewer1", "name": "Reviewer1 Example", "email": "",
                  "roles": ["reviewer"], "programs": ["support"], "program_roles": {"support": ["reviewer"]},
                  "must_change_password": False}
    assert api().get(f"{V1}/users/me/").status_code == 403


def test_token_create_and_rotate_with_password(api, program, reviewer1, pw):
    session = api(reviewer1)
    created = session.post(f"{V1}/users/me/token/", {"password": pw(reviewer1)}, format="json")
    assert created.status_code == 201
    first = created.json()["token"]
    token_client = api()
    token_client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert token_client.get(f"{V1}/users/me/").json()["username"] == "reviewer1"
    rotated = token_client.post(f"{V1}/users/me/token/", {"password": pw(reviewer1)}, format="json")
    second = rotated.json()["token"]
    assert second != first and second.startswith("pgk_")
    live = ApiKey.objects.get(owner=reviewer1, revoked_at__isnull=True)
    assert live.key_hash == hashlib.sha256(second.encode()).hexdigest() and second.startswith(live.prefix)
    assert not ApiKey.objects.filter(key_hash__in=[first, second]).exists()  # stored only hashed
    assert token_client.get(f"{V1}/users/me/").status_code == 401  # the old key stopped working
    actions = list(AuditEvent.objects.filter(action__startswith="api_token").values_list("action", flat=True))
    assert actions == ["api_token.created", "api_token.rotated"]
    assert all(second not in str(e.after) and first not in str(e.after)
               for e in AuditEvent.objects.filter(action__startswith="api_token"))


def test_token_refused_without_the_right_password(api, program, reviewer1):
    wrong = api(reviewer1).post(f"{V1}/users/me/token/", {"password": "nope"}, format="json")
    assert error(wrong) == {"status": 403, "code": "reauthentication_failed", "field": "password",
                            "detail": "wrong password for user 'reviewer1' (the attempt was recorded)",
                            "errors": {"password": ["wrong password for user 'reviewer1' (the attempt was recorded)"]}}
    assert AuditEvent.objects.filter(action="api_token.denied", actor=reviewer1).count() == 1
    assert not ApiKey.objects.filter(owner=reviewer1).exists()
    missing = api(reviewer1).post(f"{V1}/users/me/token/", {}, format="json")
    assert missing.status_code == 400 and missing.json()["field"] == "password"
