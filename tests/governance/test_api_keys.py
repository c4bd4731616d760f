"""API keys (issue 13): hashed at rest and shown once, scoped, expiring, with last use; owned by a person or a
service account; refused at once on every path (the bundle fast path included) when revoked, expired or when
the owner is deactivated; bad keys are 401 and a client sending many is throttled (429)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.authtoken.models import Token

from governance.actions import release_version
from governance.actions.accounts import check_can_sign, create_service_account, deactivate_user
from governance.actions.programs import add_member
from governance.actions.tokens import create_api_key
from governance.api.bundles import forget
from governance.errors import PermissionDenied
from governance.models import ApiKey, AuditEvent
from tests.governance.api_support import V1, error
from tests.governance.conftest import password

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db

BUNDLE = f"{V1}/programs/support/releases/production/bundle"


@pytest.fixture(autouse=True)
def fresh_throttles():
    cache.clear()
    yield
    cache.clear()


def keyed(api, key: str):
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def released(signing, make_approved, releaser):
    release_version(make_approved(), actor=releaser, reason="go live")


@pytest.fixture
def fetcher(admin, program):
    """A service account that may see the support program, as production services are set up."""
    service = create_service_account(actor=admin, username="svc-fetch", first_name="Fetch service")
    add_member(program, actor=admin, user=service, reason="production fetch")
    return service


def test_a_key_is_stored_hashed_shown_once_and_audited(api, program, reviewer1):
    response = api(reviewer1).post(f"{V1}/users/me/keys/", {
        "password": password(reviewer1), "name": "ci", "programs": ["support"], "expires_in_days": 30},
        format="json")
    assert response.status_code == 201
    body = response.json()
    key = body["key"]
    assert key.startswith(body["prefix"]) and body["programs"] == ["support"] and body["active"] is True
    row = ApiKey.objects.get(pk=body["id"])
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert timedelta(days=29) < row.expires_at - timezone.now() <= timedelta(days=30)
    assert key not in str(list(ApiKey.objects.values())) + str(list(AuditEvent.objects.values("after", "reason")))
    event = AuditEvent.objects.get(action="api_key.created")
    assert event.after["key"]["prefix"] == row.prefix and event.actor == reviewer1
    assert key not in str(api(reviewer1).get(f"{V1}/users/me/keys/").json())

    client = keyed(api, key)
    assert client.get(f"{V1}/programs/support/").status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None
    outside = client.get(f"{V1}/versions/")  # scoped to /programs/support/...
    assert error(outside)["status"] == 403 and "is limited to /programs/<slug>/ of support" in error(outside)["detail"]


def test_key_creation_checks_password_owner_and_input(api, program, reviewer1, admin, outsider):
    wrong = api(reviewer1).post(f"{V1}/users/me/keys/", {"password": "nope", "name": "x"}, format="json")
    assert (error(wrong)["status"], error(wrong)["field"]) == (403, "password")
    hidden = api(outsider).post(f"{V1}/users/me/keys/", {"password": password(outsider), "name": "x",
                                                         "programs": ["support"]}, format="json")
    assert (error(hidden)["status"], error(hidden)["field"]) == (400, "programs")
    too_long = api(reviewer1).post(f"{V1}/users/me/keys/", {"password": password(reviewer1), "name": "x",
                                                            "expires_in_days": 5000}, format="json")
    assert (error(too_long)["status"], error(too_long)["field"]) == (400, "expires_in_days")
    for_person = api(admin).post(f"{V1}/users/reviewer1/keys/", {"name": "x"}, format="json")
    assert error(for_person) == {**error(for_person), "status": 403,
                                 "detail": "user 'reviewer1' is a person: only they create their API keys"}
    assert not ApiKey.objects.exists()


def test_bundle_fast_path_refuses_revoked_expired_and_deactivated_keys_at_once(api, released, fetcher, admin):
    created = api(admin).post(f"{V1}/users/svc-fetch/keys/", {"name": "prod", "bundle_only": True}, format="json")
    assert created.status_code == 201
    key, key_id = created.json()["key"], created.json()["id"]
    client = keyed(api, key)
    assert client.get(BUNDLE).status_code == 200
    assert client.get(BUNDLE).status_code == 200  # from the per-process memo
    refused = client.get(f"{V1}/programs/support/")
    assert error(refused)["status"] == 403 and "only fetches release bundles" in error(refused)["detail"]

    assert api(admin).delete(f"{V1}/users/svc-fetch/tokens/{key_id}/").status_code == 200
    assert client.get(BUNDLE).status_code == 401
    assert error(client.get(BUNDLE))["detail"] == "Invalid API key: revoked."

    row, key = create_api_key(fetcher, actor=admin, name="prod-2", bundle_only=True)
    client = keyed(api, key)
    assert client.get(BUNDLE).status_code == 200
    ApiKey.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))  # time passes
    forget()  # (the memo keeps a grant for GOVERNANCE_BUNDLE_STATE_TTL seconds; an update() sends no signal)
    assert error(client.get(BUNDLE))["detail"] == "Invalid API key: expired."

    row, key = create_api_key(fetcher, actor=admin, name="prod-3", bundle_only=True)
    client = keyed(api, key)
    assert client.get(BUNDLE).status_code == 200
    deactivate_user(fetcher, actor=admin, reason="service retired")
    assert client.get(BUNDLE).status_code == 401


def test_deactivated_owners_legacy_token_is_refused_on_the_fast_path(api, released, reviewer1, admin):
    client = api(reviewer1, token=True)  # a key of DRF's authtoken table
    assert client.get(BUNDLE).status_code == 200
    deactivate_user(reviewer1, actor=admin)
    assert client.get(BUNDLE).status_code == 401
    assert not Token.objects.filter(user=reviewer1).exists()


def test_legacy_tokens_can_be_turned_off(api, settings, program, reviewer1):
    client = api(reviewer1, token=True)
    assert client.get(f"{V1}/users/me/").status_code == 200
    settings.GOVERNANCE_LEGACY_TOKENS = False
    assert error(client.get(f"{V1}/users/me/"))["status"] == 401


def test_a_service_account_never_signs_or_logs_in(admin, program, client):
    service = create_service_account(actor=admin, username="svc-ci", roles=["reviewer"])
    with pytest.raises(PermissionDenied, match="user 'svc-ci' is a service account and cannot sign"):
        check_can_sign(service)
    assert not service.has_usable_password()
    assert AuditEvent.objects.filter(action="service_account.created", object_id=str(service.pk)).count() == 1


def test_bad_keys_are_401_and_a_client_sending_many_is_throttled(api, settings, program, reviewer1):
    settings.GOVERNANCE_API_AUTH_MAX_FAILURES = 3
    good = keyed(api, create_api_key(reviewer1, actor=reviewer1, name="x", password=password(reviewer1))[1])
    assert good.get(f"{V1}/users/me/").status_code == 200
    for attempt in range(3):
        bad = keyed(api, f"pgk_00000000_guess{attempt}").get(f"{V1}/users/me/")
        assert bad.status_code == 401 and bad["WWW-Authenticate"] == "Token"
    throttled = good.get(f"{V1}/users/me/")
    assert throttled.status_code == 429 and "Retry-After" in throttled


def test_password_guesses_through_the_api_count_towards_the_login_lockout(api, settings, program, reviewer1):
    settings.GOVERNANCE_LOGIN_MAX_FAILURES = 2
    me = api(reviewer1)
    guesses = [me.post(f"{V1}/users/me/token/", {"password": "guess"}, format="json"),
               me.post(f"{V1}/users/me/password/", {"old_password": "guess", "new_password": "x-new-pass-123"},
                       format="json")]
    assert [error(g)["status"] for g in guesses] == [403, 403]
    locked = me.post(f"{V1}/users/me/token/", {"password": password(reviewer1)}, format="json")
    assert error(locked)["status"] == 403 and "is locked out after repeated wrong passwords" in error(locked)["detail"]
    assert AuditEvent.objects.filter(action="auth.locked_out", object_id=str(reviewer1.pk)).count() == 1
    assert [e.action for e in AuditEvent.objects.filter(action__endswith="denied").order_by("id")] == [
        "api_token.denied", "user.password_change_denied"]
    assert not ApiKey.objects.filter(owner=reviewer1).exists()
