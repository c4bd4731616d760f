"""Single sign-on against a real OpenID Connect provider (django-oauth-toolkit, a separate server process on a
local port: tests/oidc_provider): login by the code flow, users and program roles from claims, signatures
re-authenticated at the provider (fresh, stale, someone else's, replayed), and a user the provider disables
locked out of the portal and the API."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client

from governance import bundles
from governance.actions import tokens
from governance.models import AuditEvent, Identity, ProgramMembership, Review
from governance.oidc import checks, provider
from tests.governance.conftest import seen
from tests.oidc_provider.harness import ProviderBrowser, ProviderRefused, start_provider

RP = "http://testserver"
GROUP_ROLES = {"support-reviewers": {"support": ["reviewer"]}, "support-authors": {"support": ["author"]}}


@pytest.fixture(scope="module")
def oidc_provider():
    started = start_provider([f"{RP}/oidc/callback/", f"{RP}/oidc/sign/callback/"])
    yield started
    started.stop()


@pytest.fixture
def sso(oidc_provider, settings):
    """The portal configured for the provider, as the GOVERNANCE_OIDC_* environment variables would."""
    for name, value in oidc_provider.settings().items():
        setattr(settings, name, value)
    settings.GOVERNANCE_OIDC_GROUP_ROLES = GROUP_ROLES
    provider._discovered.clear()
    return oidc_provider


@pytest.fixture
def rita(sso):
    """A reviewer of program "support" through her provider group (her provider-side password: rita-pass-1)."""
    sso.user("rita", password="rita-pass-1", email="rita@example.org", first_name="Rita", last_name="Levi",
             groups=["support-reviewers"], active=True)
    return "rita"


def sso_login(client: Client, sso, username: str, password: str, browser: ProviderBrowser | None = None):
    """The whole code flow: the portal's redirect, the provider's login page, the portal's callback."""
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302 and start["Location"].startswith(sso.issuer)
    back = (browser or ProviderBrowser(sso)).authorize(start["Location"], username, password)
    return client.get(back.removeprefix(RP))


def logged_in_as(username: str, sso, password: str) -> tuple[Client, ProviderBrowser]:
    client, browser = Client(), ProviderBrowser(sso)
    assert sso_login(client, sso, username, password, browser).status_code == 302
    return client, browser


def test_login_by_code_flow_creates_the_user_from_claims(sso, rita, program, audit):
    client = Client()
    response = sso_login(client, sso, "rita", "rita-pass-1")

    assert response.status_code == 302 and response["Location"] == "/"
    identity = Identity.objects.select_related("user").get(issuer=sso.issuer)
    user = identity.user
    assert (user.username, user.email, user.get_full_name()) == ("rita", "rita@example.org", "Rita Levi")
    assert not user.has_usable_password()  # signs in and signs through the provider only
    assert identity.claims["groups"] == ["support-reviewers"] and identity.refresh_token
    assert client.get("/").status_code == 200
    membership = ProgramMembership.objects.get(program=program, user=user)
    assert (membership.roles, membership.source) == (["reviewer"], "oidc")
    assert audit.actions() == ["user.created", "program.member_added", "session.started"]
    created = audit.events()[0]
    assert created.after["source"] == "oidc" and created.after["sub"] == identity.subject


def test_changed_claims_update_the_user_and_the_roles_audited(sso, rita, program, audit):
    logged_in_as("rita", sso, "rita-pass-1")
    sso.user("rita", email="rita.levi@example.org", groups=["support-authors"])
    audit.mark()

    logged_in_as("rita", sso, "rita-pass-1")

    user = Identity.objects.get(issuer=sso.issuer).user
    assert user.email == "rita.levi@example.org"
    assert ProgramMembership.objects.get(program=program, user=user).roles == ["author"]
    assert audit.actions() == ["user.updated", "program.member_roles_changed", "session.started"]
    sso.user("rita", groups=[])
    audit.mark()
    logged_in_as("rita", sso, "rita-pass-1")
    assert not ProgramMembership.objects.filter(program=program, user=user).exists()
    assert audit.actions() == ["program.member_removed", "session.started"]


def test_a_local_account_of_the_same_name_is_never_taken_over(sso, program, users):
    sso.user("reviewer1", password="other-person-1", groups=[], active=True)
    logged_in_as("reviewer1", sso, "other-person-1")
    identity = Identity.objects.select_related("user").get(issuer=sso.issuer)
    assert identity.user.username.startswith("reviewer1-") and identity.user.pk != users["reviewer1"].pk


def test_without_configuration_there_is_no_sso_and_local_login_can_be_switched_off(settings, users, client):
    settings.GOVERNANCE_OIDC_ISSUER = ""
    assert client.get("/oidc/authenticate/").status_code == 404
    assert b"sso-login" not in client.get("/login/").content
    settings.GOVERNANCE_LOCAL_LOGIN = False
    response = client.post("/login/", {"username": "reviewer1", "password": "reviewer1-secret-pass"})
    assert response.status_code == 403 and b"Password login is switched off" in response.content
    assert "_auth_user_id" not in client.session


# --- signatures ------------------------------------------------------------------------------------------------


def start_signing(client: Client, cr, decision: str = "approve", **fields) -> str:
    """POST the decision form; returns the provider URL the portal sends the signer to."""
    prefix = {"approve": "approve", "reject": "reject", "request_changes": "changes"}[decision]
    data = {f"{prefix}-content_hash": seen(cr), f"{prefix}-confirm_meaning": "on",
            **{f"{prefix}-{k}": v for k, v in fields.items()}}
    posted = client.post(f"/change-requests/{cr.pk}/{decision}/", data)
    assert posted.status_code == 302, posted.content[:2000]
    to_provider = client.get(posted["Location"])
    assert to_provider.status_code == 302
    return to_provider["Location"]


def test_signature_reauthenticates_at_the_provider(sso, rita, make_cr, audit, approve, reviewer1):
    cr = make_cr()
    client, browser = logged_in_as("rita", sso, "rita-pass-1")
    authorize = start_signing(client, cr, reason="fine")
    query = parse_qs(urlparse(authorize).query)
    assert (query["prompt"], query["max_age"]) == (["login"], ["0"])
    audit.mark()

    back = browser.authorize(authorize, "rita", "rita-pass-1")
    response = client.get(back.removeprefix(RP))

    assert browser.logins == 2  # the provider asked for the password again although its session was live
    assert response.status_code == 302 and response["Location"] == f"/change-requests/{cr.pk}/"
    review = Review.objects.get(change_request=cr)
    identity = Identity.objects.get(issuer=sso.issuer)
    assert (review.auth_method, review.auth_issuer, review.auth_subject) == ("oidc", sso.issuer, identity.subject)
    assert review.content_hash == seen(cr) and abs(time.time() - review.auth_time.timestamp()) < 30
    assert audit.actions() == ["review.approved"]
    assert audit.events()[0].after["auth_subject"] == identity.subject
    assert b"signed in again at the identity provider" in client.get(f"/change-requests/{cr.pk}/").content
    assert client.get("/api/v1/reviews/", {"change_request": cr.pk}).json()["results"][0]["auth_subject"] == \
        identity.subject
    approve(cr, reviewer1)  # the second approval (a password): the version is approved; its manifest names both
    cr.version.refresh_from_db()
    assert [(a["auth_method"], a.get("auth_subject")) for a in bundles.approvals(cr.version)] == [
        ("oidc", identity.subject), ("password", None)]


def test_a_stale_auth_time_is_refused_and_audited(sso, rita, make_cr, settings, audit):
    settings.GOVERNANCE_OIDC_SIGN_MAX_AGE = 1
    cr = make_cr()
    client, browser = logged_in_as("rita", sso, "rita-pass-1")
    back = browser.authorize(start_signing(client, cr), "rita", "rita-pass-1")
    time.sleep(2.5)  # the re-authentication is now older than the window a signature allows

    response = client.get(back.removeprefix(RP))

    assert response.status_code == 403 and b"stale authentication" in response.content
    assert not Review.objects.filter(change_request=cr).exists()
    failed = AuditEvent.objects.filter(action="signature.failed").latest("id")
    assert "stale authentication" in failed.reason and failed.after["auth_method"] == "oidc"


def test_someone_else_signing_in_at_the_provider_is_refused(sso, rita, make_cr, audit):
    sso.user("mallory", password="mallory-pass-1", groups=["support-reviewers"], active=True)
    cr = make_cr()
    client, browser = logged_in_as("rita", sso, "rita-pass-1")
    authorize = start_signing(client, cr)
    audit.mark()

    back = ProviderBrowser(sso).authorize(authorize, "mallory", "mallory-pass-1")
    response = client.get(back.removeprefix(RP))

    assert response.status_code == 403 and b"not the signer" in response.content
    assert not Review.objects.filter(change_request=cr).exists()
    assert audit.actions() == ["signature.failed"]


def test_a_replayed_answer_is_refused_and_audited(sso, rita, make_cr, audit):
    cr = make_cr()
    client, browser = logged_in_as("rita", sso, "rita-pass-1")
    back = browser.authorize(start_signing(client, cr, decision="reject", reason="wrong tone"), "rita", "rita-pass-1")
    assert client.get(back.removeprefix(RP)).status_code == 302
    audit.mark()

    replay = client.get(back.removeprefix(RP))

    assert replay.status_code == 403 and b"replayed" in replay.content
    assert Review.objects.filter(change_request=cr).count() == 1
    assert audit.actions() == ["signature.failed"]


def test_the_signature_binds_the_content_the_page_showed(sso, rita, make_cr, author, program):
    from governance.actions import edit_version, withdraw_change_request
    from tests.governance.conftest import payload_with

    cr = make_cr()
    client, browser = logged_in_as("rita", sso, "rita-pass-1")
    authorize = start_signing(client, cr)
    withdraw_change_request(cr, actor=author, reason="one more edit")  # while the signer is at the provider
    edit_version(cr.version, actor=author, payload=payload_with(program, "Changed meanwhile."))

    response = client.get(browser.authorize(authorize, "rita", "rita-pass-1").removeprefix(RP))

    assert response.status_code == 409
    assert not Review.objects.filter(change_request=cr).exists()


# --- a user the provider disables -------------------------------------------------------------------------------


def test_a_user_disabled_at_the_provider_is_locked_out(sso, rita, program, audit):
    client, _ = logged_in_as("rita", sso, "rita-pass-1")
    user = Identity.objects.get(issuer=sso.issuer).user
    _, key = tokens._issue(user, actor=user, name="ci", programs=[], bundle_only=False, expires_at=None,
                           action="api_key.created")  # (an SSO user's key: made before, say)
    assert Client().get("/api/v1/programs/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert checks.check_identities().checked == 1  # the provider still vouches: nothing changes
    user.refresh_from_db()
    assert user.is_active
    sso.user("rita", active=False)
    audit.mark()

    report = checks.check_identities()

    assert (report.checked, report.refused) == (1, 1)
    user.refresh_from_db()
    assert not user.is_active
    assert user.portal_sessions.get().end_reason == "disabled at the identity provider"
    assert audit.actions() == ["user.deactivated"]
    assert audit.events()[0].after["tokens_revoked"] == 1 and audit.events()[0].after["source"] == "oidc"
    assert client.get("/").status_code == 302  # the portal session stopped
    assert Client().get("/api/v1/programs/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401
    with pytest.raises(ProviderRefused):
        sso_login(Client(), sso, "rita", "rita-pass-1")

    sso.user("rita", active=True)  # enabled again at the provider: the next login reactivates the account
    audit.mark()
    logged_in_as("rita", sso, "rita-pass-1")
    user.refresh_from_db()
    assert user.is_active and audit.actions()[0] == "user.reactivated"


def test_an_account_deactivated_here_stays_out_whatever_the_provider_says(sso, rita, admin):
    from governance.actions import deactivate_user

    logged_in_as("rita", sso, "rita-pass-1")
    deactivate_user(Identity.objects.get(issuer=sso.issuer).user, actor=admin, reason="left the team")
    client = Client()
    response = sso_login(client, sso, "rita", "rita-pass-1")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert "_auth_user_id" not in client.session


def test_an_sso_user_cannot_sign_with_a_password_through_the_api(sso, rita, make_cr):
    cr = make_cr()
    client, _ = logged_in_as("rita", sso, "rita-pass-1")  # her provider password is no password here

    response = client.post(f"/api/v1/change-requests/{cr.pk}/approve/",
                           {"password": "rita-pass-1", "content_hash": seen(cr)}, content_type="application/json")

    assert response.status_code == 403
    assert "signs through the identity provider" in response.json()["detail"]
    assert not Review.objects.filter(change_request=cr).exists()


def test_the_login_page_offers_sso_and_can_drop_the_password_form(sso, settings, client):
    page = client.get("/login/")
    assert b"Sign in with your organization" in page.content and b'name="password"' in page.content
    settings.GOVERNANCE_LOCAL_LOGIN = False
    page = client.get("/login/")
    assert b"sso-login" in page.content and b'name="password"' not in page.content


def test_group_claims_leave_a_membership_granted_by_hand_alone(settings, program, admin, outsider, audit):
    from governance.actions import grant_membership
    from governance.actions.identities import apply_group_roles

    settings.GOVERNANCE_OIDC_GROUP_ROLES = GROUP_ROLES
    grant_membership(program, outsider, actor=admin, roles=["releaser"], reason="on call this month")
    audit.mark()

    apply_group_roles(outsider, ["support-reviewers"])

    membership = ProgramMembership.objects.get(program=program, user=outsider)
    assert (membership.roles, membership.source) == (["releaser"], "manual") and audit.actions() == []


def test_a_provider_that_does_not_answer_decides_nothing(settings, users, program):
    from governance.actions.identities import seal_token
    from tests.oidc_provider.harness import free_port

    settings.GOVERNANCE_OIDC_ISSUER = f"http://127.0.0.1:{free_port()}/o"  # nothing listens there
    settings.GOVERNANCE_OIDC_CLIENT_ID = "governance-portal"
    settings.GOVERNANCE_OIDC_TIMEOUT = 2
    provider._discovered.clear()
    user = users["reviewer1"]
    Identity.objects.create(user=user, issuer=settings.GOVERNANCE_OIDC_ISSUER, subject="42",
                            refresh_token=seal_token("a-refresh-token"))

    report = checks.check_identities()

    assert (report.checked, report.refused, report.unreachable) == (1, 0, 1)
    user.refresh_from_db()
    assert user.is_active and "discovery document" in Identity.objects.get(user=user).check_error
