"""Safe releases: each label move is planned and confirmed before it happens (what serves before and after, its
system evaluation score, the diff), a label is created only on purpose, a fallback equal to the release is
refused (409) by the action and shown on the form, and no version is preselected after a rollback."""

from __future__ import annotations

import re

import pytest

from governance.actions import releases as release_actions
from governance.errors import IllegalTransition, InvalidInput
from governance.models import AuditEvent, Release, ReleaseLabel

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(make_approved, releaser):
    version = make_approved(version=None)
    release_actions.release_version(version, actor=releaser, reason="baseline")
    return version


@pytest.fixture
def signed_in(client, releaser, pw):
    assert client.login(username=releaser.username, password=pw(releaser))
    return client


def _url(program, move: str = "") -> str:
    return f"/programs/{program.slug}/releases/{move + '/' if move else ''}"


def _label(program, name: str = "production") -> ReleaseLabel:
    return ReleaseLabel.objects.select_related("version", "fallback_version").get(program=program, name=name)


# --- actions ----------------------------------------------------------------------------------------------------


def test_a_fallback_equal_to_the_release_is_refused(program, production, releaser, make_approved):
    with pytest.raises(IllegalTransition, match="version 1 is the version label 'production' serves; its fallback "
                                                "must be a different approved version"):
        release_actions.pin_fallback(program, actor=releaser, version=production, reason="same")
    v2 = make_approved()
    release_actions.pin_fallback(program, actor=releaser, version=v2, reason="known good")
    release_actions.release_version(v2, actor=releaser, reason="the fallback becomes the release")
    with pytest.raises(IllegalTransition, match="version 2 is the version label 'production' serves"):
        release_actions.set_kill_switch(program, actor=releaser, on=True, reason="incident")
    assert not _label(program).kill_switch


def test_a_label_is_created_only_when_asked(program, production, releaser, make_approved):
    v2 = make_approved()
    with pytest.raises(InvalidInput, match="program support has no label 'prodution' \\(its labels: 'production'\\); "
                                           "choose an existing label, or create a new one explicitly") as refused:
        release_actions.release_version(v2, actor=releaser, label="prodution", reason="typo", new_label=False)
    assert refused.value.field == "label" and not ReleaseLabel.objects.filter(name="prodution").exists()
    with pytest.raises(InvalidInput, match="label 'production' already exists in support"):
        release_actions.release_version(v2, actor=releaser, label="production", reason="x", new_label=True)
    release_actions.release_version(v2, actor=releaser, label="staging", reason="try it", new_label=True)
    assert _label(program, "staging").version == v2


def test_a_plan_says_what_serves_before_and_after_and_changes_nothing(program, production, releaser, make_approved):
    v2 = make_approved()
    events = AuditEvent.objects.count()
    move = release_actions.plan_release(v2, actor=releaser, label="production", new_label=False)
    assert (move.serving_before, move.serving_after, move.creates_label, move.warnings) == (production, v2, False, ())
    assert AuditEvent.objects.count() == events and _label(program).version == production
    release_actions.pin_fallback(program, actor=releaser, version=v2, reason="known good")
    kill = release_actions.plan_kill_switch(program, actor=releaser, label="production", on=True)
    assert (kill.serving_before, kill.serving_after) == (production, v2)
    again = release_actions.plan_release(v2, actor=releaser, label="production", new_label=False)
    assert "its kill switch would change nothing" in again.warnings[0]


# --- views ------------------------------------------------------------------------------------------------------


def test_release_shows_before_and_after_then_applies_on_confirmation(signed_in, program, production, make_approved):
    v2 = make_approved()
    data = {"release-version": v2.pk, "release-label": "production", "release-reason": "better"}
    preview = signed_in.post(_url(program, "release"), data)
    page = preview.content.decode()
    assert preview.status_code == 200 and "Confirm: Release version 2 as production" in page
    now, after = page.split('class="serving-box')[1:3]
    assert "Version 1" in now and "Version 2" in after and "Test score" in after and "system evaluation" in after
    assert "What changes for those it serves" in page and 'name="confirmed" value="1"' in page
    assert _label(program).version == production and not Release.objects.filter(version=v2).exists()

    done = signed_in.post(_url(program, "release"), {**data, "confirmed": "1"})
    assert done.status_code == 302 and done["Location"] == _url(program)
    assert _label(program).version == v2
    assert "Label production now serves version 2." in signed_in.get(_url(program)).content.decode()


def test_a_typo_cannot_create_a_label_and_a_new_one_is_named_explicitly(signed_in, program, production,
                                                                         make_approved):
    v2 = make_approved()
    typo = signed_in.post(_url(program, "release"), {"release-version": v2.pk, "release-label": "prodution",
                                                     "release-reason": "x", "confirmed": "1"})
    assert typo.status_code == 400 and "Select a valid choice" in typo.content.decode()
    unnamed = signed_in.post(_url(program, "release"), {"release-version": v2.pk, "release-label": "__new__",
                                                        "release-reason": "x", "confirmed": "1"})
    assert unnamed.status_code == 400 and "Name the new label" in unnamed.content.decode()
    taken = signed_in.post(_url(program, "release"), {"release-version": v2.pk, "release-label": "__new__",
                                                      "release-new_label": "production", "release-reason": "x"})
    assert taken.status_code == 400 and "already exists in support" in taken.content.decode()
    assert list(ReleaseLabel.objects.values_list("name", flat=True)) == ["production"]
    new = {"release-version": v2.pk, "release-label": "__new__", "release-new_label": "staging", "release-reason": "x"}
    assert "Release version 2 as new label staging" in signed_in.post(_url(program, "release"), new).content.decode()
    assert signed_in.post(_url(program, "release"), {**new, "confirmed": "1"}).status_code == 302
    assert _label(program, "staging").version == v2


def test_a_fallback_equal_to_the_release_is_refused_on_the_form(signed_in, program, production):
    refused = signed_in.post(_url(program, "fallback"), {"fallback-label": "production",
                                                         "fallback-version": production.pk, "fallback-reason": "x"})
    page = refused.content.decode()
    assert refused.status_code == 409 and "Pin a kill-switch fallback" in page  # the releases page, not an error page
    assert "its fallback must be a different approved version, or the kill switch would change nothing" in page
    assert '<meta name="form-page" content="/programs/support/releases/">' in page  # portal.js fixes the address
    assert _label(program).fallback_version is None


def test_kill_switch_is_confirmed_and_named_for_what_it_serves(signed_in, program, production, make_approved,
                                                               releaser):
    v2 = make_approved()
    release_actions.pin_fallback(program, actor=releaser, version=v2, reason="known good")
    page = signed_in.get(_url(program)).content.decode()
    assert "Engage the kill switch (serve fallback v2)" in page and "instead of release v1" in page
    data = {"label": "production", "on": "1", "reason": "incident 42"}
    preview = signed_in.post(_url(program, "kill-switch"), data).content.decode()
    assert ("Engage the kill switch of production: serve fallback version 2 instead of release version 1"
            in preview)
    assert not _label(program).kill_switch
    assert signed_in.post(_url(program, "kill-switch"), {**data, "confirmed": "1"}).status_code == 302
    assert _label(program).serving_version == v2
    no_reason = signed_in.post(_url(program, "kill-switch"), {"label": "production", "on": "0"})
    assert no_reason.status_code == 400 and "This field is required." in no_reason.content.decode()


def test_after_a_rollback_no_version_is_preselected(signed_in, program, production, make_approved, releaser):
    v2 = make_approved()
    release_actions.release_version(v2, actor=releaser, reason="v2")
    done = signed_in.post(_url(program, "rollback"), {"rollback-label": "production", "rollback-reason": "regression",
                                                      "confirmed": "1"})
    assert done.status_code == 302 and _label(program).version == production
    page = signed_in.get(_url(program)).content.decode()
    release_select = page.split('name="release-version"')[1].split("</select>")[0]
    assert re.search(r'<option value="" selected>Choose a version</option>', release_select)
    assert f'value="{v2.pk}" selected' not in release_select


def test_history_is_searched_and_paginated(signed_in, program, production, make_approved, releaser):
    v2 = make_approved()
    release_actions.release_version(v2, actor=releaser, reason="faster answers")
    page = signed_in.get(_url(program), {"q": "faster"}).content.decode()
    history = page.split('id="hist-h"')[1].split("</table>")[0]
    assert "faster answers" in history and "baseline" not in history
    assert "1 move, newest first" in page
    assert "No move matches" in signed_in.get(_url(program), {"q": "nothing-like-this"}).content.decode()


def test_get_on_a_post_only_address_is_a_friendly_page(signed_in, program, production):
    response = signed_in.get(_url(program, "release"))
    page = response.content.decode()
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert "Nothing to show at this address" in page and f'href="{_url(program)}" id="form-page-link"' in page


def test_pinning_a_fallback_shows_what_the_kill_switch_would_serve(signed_in, program, production, make_approved):
    v2 = make_approved()
    page = signed_in.post(_url(program, "fallback"), {"fallback-label": "production", "fallback-version": v2.pk,
                                                      "fallback-reason": "known good"}).content.decode()
    now, then = page.split('class="serving-box')[1:3]
    assert "Serves now" in now and "Version 1" in now
    assert "Would serve while the kill switch is on" in then and "Version 2" in then
    assert "What the kill switch would change" in page and _label(program).fallback_version is None
