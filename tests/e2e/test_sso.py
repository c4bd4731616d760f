"""Browser test of single sign-on: a reviewer signs in to the portal at a real OpenID Connect provider (a separate
server process, tests/oidc_provider) and signs an approval by signing in at the provider again."""

from __future__ import annotations

from typing import Any

import pytest

from governance.actions import create_version, open_change_request
from governance.models import Review
from governance.oidc import provider as oidc_provider
from tests.e2e.portal import SCREENSHOTS, VIEWPORT, browser, committed, expect_text, lm_server, portal_settings, world
from tests.governance.conftest import payload_with
from tests.governance.export_helpers import evaluate
from tests.oidc_provider.harness import start_provider

FIXTURES = (browser, committed, lm_server, portal_settings, world)  # imported so pytest finds them
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def sso(live_server, portal_settings, world) -> Any:
    """The provider, with the live server's two callbacks registered, and the portal configured for it."""
    started = start_provider([f"{live_server.url}/oidc/callback/", f"{live_server.url}/oidc/sign/callback/"])
    for name, value in started.settings().items():
        setattr(portal_settings, name, value)
    portal_settings.GOVERNANCE_OIDC_PROVIDER_NAME = "Acme SSO"
    portal_settings.GOVERNANCE_OIDC_GROUP_ROLES = {"triage-reviewers": {"support-triage": ["reviewer"]}}
    oidc_provider._discovered.clear()
    started.user("rita", password="rita-pass-1", first_name="Rita", last_name="Levi", email="rita@example.org",
                 groups=["triage-reviewers"], active=True)
    yield started
    started.stop()


def sign_in_at_provider(page: Any, username: str, password: str) -> None:
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    page.locator("#provider-login").click()


def test_sso_login_and_signature_through_the_provider(live_server, browser, world, sso):
    program, users = world["program"], world["users"]
    v2 = create_version(program, actor=users["author"], payload=payload_with(program, "Route each ticket to one team."))
    cr = evaluate(open_change_request(v2, actor=users["author"], title="Clearer instructions"))
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT)
    context.set_default_timeout(20_000)
    page = context.new_page()

    page.goto("/login/")
    page.get_by_role("link", name="Sign in with Acme SSO").click()
    page.wait_for_url(f"{sso.issuer.rsplit('/o', 1)[0]}/**")  # the provider's own login page
    sign_in_at_provider(page, "rita", "rita-pass-1")
    page.wait_for_url(f"{live_server.url}/")
    expect_text(page, "Clearer instructions")  # waiting for her review: the group gave her the reviewer role

    page.goto(f"/change-requests/{cr.pk}/")
    approve = page.locator("details.decision").filter(has=page.locator("#approve-button"))
    approve.locator("summary").click()  # the decision panel opens on demand
    assert approve.locator("input[type=password]").count() == 0  # no password here: the provider signs
    approve.get_by_label("Meaning of my signature").check()
    page.locator("#approve-button").click()
    page.wait_for_url(f"{sso.issuer.rsplit('/o', 1)[0]}/**")  # prompt=login: asked again despite her session
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "sso-signing-at-provider.png"))
    sign_in_at_provider(page, "rita", "rita-pass-1")
    page.wait_for_url(f"{live_server.url}/change-requests/{cr.pk}/")

    expect_text(page, "Signed through the identity provider")
    expect_text(page, "signed in again at the identity provider")
    page.screenshot(path=str(SCREENSHOTS / "sso-signed.png"), full_page=True)
    review = Review.objects.get(change_request=cr)
    assert (review.auth_method, review.auth_issuer, review.printed_name) == ("oidc", sso.issuer, "Rita Levi")
    context.close()
