"""Portal plumbing every page shares: GET on a POST-only address is a page, not a bare 405; a refused form names
the page it belongs to (portal.js puts it in the address bar); error pages read as sentences, not codes."""

from __future__ import annotations

import pytest

from governance.portal_pages import accepts_get, page_url

pytestmark = pytest.mark.django_db


def _login(client, user, pw):
    assert client.login(username=user.username, password=pw(user))
    return client


def test_the_page_a_form_address_belongs_to(program):
    assert not accepts_get("/change-requests/5/approve/") and accepts_get("/change-requests/5/")
    assert page_url("/change-requests/5/approve/") == "/change-requests/5/"
    assert page_url(f"/programs/{program.slug}/releases/kill-switch/") == f"/programs/{program.slug}/releases/"
    assert page_url(f"/programs/{program.slug}/runs/") == f"/programs/{program.slug}/"
    assert page_url("/login/") == "/login/"  # a form page that answers GET keeps its address


@pytest.mark.parametrize("path", ["/change-requests/{cr}/approve/", "/programs/{slug}/runs/",
                                  "/programs/{slug}/releases/kill-switch/", "/runs/{run}/cancel/"])
def test_get_on_a_post_only_address_is_a_friendly_page(client, author, pw, make_cr, path):
    cr = make_cr(evaluated=False)
    url = path.format(cr=cr.pk, slug=cr.program.slug, run=1)
    response = _login(client, author, pw).get(url)
    page = response.content.decode()
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert "Nothing to show at this address" in page and "Nothing was changed." in page
    assert f'href="{page_url(url)}" id="form-page-link"' in page


def test_the_api_keeps_its_own_405(client, author, pw):
    response = _login(client, author, pw).get("/api/v1/change-requests/1/approve/")
    assert response.status_code in (404, 405) and b"Nothing to show at this address" not in response.content


def test_refusals_read_as_sentences_not_codes(client, author, pw, make_cr):
    cr = make_cr()
    refused = _login(client, author, pw).post(f"/change-requests/{cr.pk}/approve/",
                                              {"approve-password": "x", "approve-confirm_meaning": "on"})
    page = refused.content.decode()
    assert refused.status_code == 403 and "You cannot do this" in page
    assert "HTTP 403" not in page and "permission_denied" not in page
    main = page.split("<main")[1]
    assert "needs the reviewer role" in main and main.count('role="alert"') == 1
    assert '<meta name="form-page" content="/change-requests/' in page  # the address bar leaves the POST address


def test_lists_are_searched_and_paginated(client, admin, author, pw, program, make_version):
    for _ in range(21):
        make_version()
    page = _login(client, author, pw).get(f"/programs/{program.slug}/").content.decode()
    assert 'name="vq"' in page and 'aria-label="Version pages"' in page and "?versions=2" in page
    assert f'href="/programs/{program.slug}/versions/21/"' in page and f'/versions/1/"' not in page
    second = client.get(f"/programs/{program.slug}/", {"versions": 2}).content.decode()
    assert f'href="/programs/{program.slug}/versions/1/"' in second
    found = client.get("/programs/", {"q": program.name[:5]}).content.decode()
    assert f'href="/programs/{program.slug}/"' in found
    assert "No program matches" in client.get("/programs/", {"q": "zzz-nothing"}).content.decode()
    client.logout()
    accounts = _login(client, admin, pw).get("/accounts/", {"q": "review"}).content.decode()
    assert 'href="/accounts/reviewer1/"' in accounts and 'href="/accounts/author/"' not in accounts
