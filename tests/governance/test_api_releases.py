"""API: releases (release, rollback, fallback pin, kill switch, history, labels) and the production bundle fetch."""

from __future__ import annotations

import pytest

from governance.models import AuditEvent, Export, ReleaseAction
from governance.signing import public_key
from optimizer.bundle import verify_bundle
from tests.governance.api_support import V1, error, results

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db

BUNDLE = f"{V1}/programs/support/releases/production/bundle"


@pytest.fixture
def two_released(make_approved, releaser):
    """v1 then v2 released as production (through the actions)."""
    from governance.actions import release_version

    first, second = make_approved(), make_approved()
    release_version(first, actor=releaser, reason="go live")
    release_version(second, actor=releaser, reason="better")
    return first, second


def test_release_and_history(api, make_approved, releaser):
    version = make_approved()
    response = api(releaser).post(f"{V1}/programs/support/release/", {"version": version.pk, "reason": "go live"},
                                  format="json")
    assert response.status_code == 201, response.content
    assert (response.json()["action"], response.json()["label"], response.json()["version_number"]) == (
        "release", "production", 1)
    labels = api(releaser).get(f"{V1}/programs/support/labels/").json()
    assert [(label["name"], label["version"], label["serving_version"]) for label in labels] == [
        ("production", version.pk, version.pk)]
    history = results(api(releaser).get(f"{V1}/releases/?program=support&label=production"))
    assert [(h["action"], h["reason"], h["actor"]["username"]) for h in history] == [("release", "go live", "releaser")]


def test_release_refusals(api, make_approved, make_version, reviewer1, users, outsider):
    version = make_approved()
    approver = api(reviewer1).post(f"{V1}/programs/support/release/", {"version": version.pk, "reason": "r"},
                                   format="json")
    assert error(approver) == {"status": 403, "code": "permission_denied",
                               "detail": "user 'reviewer1' needs the releaser role to move release labels on program support"}
    no_reason = api(users["releaser"]).post(f"{V1}/programs/support/release/", {"version": version.pk},
                                            format="json")
    assert no_reason.status_code == 400 and no_reason.json()["field"] == "reason"
    draft = make_version()
    not_approved = api(users["releaser"]).post(f"{V1}/programs/support/release/",
                                               {"version": draft.pk, "reason": "r"}, format="json")
    assert error(not_approved) == {"status": 409, "code": "illegal_transition",
                                   "detail": f"version {draft.number} is draft; only approved versions can be released"}
    assert api(outsider).post(f"{V1}/programs/support/release/", {"version": version.pk, "reason": "r"},
                              format="json").status_code == 404


def test_version_of_another_program_is_not_found_in_the_body(api, make_approved, users, releaser):
    from governance.actions import create_program
    from tests.governance.conftest import demo_spec

    create_program(actor=users["author"], slug="other", name="Other", spec=demo_spec(), members=[releaser])
    version = make_approved()
    response = api(releaser).post(f"{V1}/programs/other/release/", {"version": version.pk, "reason": "r"},
                                  format="json")
    assert response.status_code == 400 and response.json()["field"] == "version"


def test_rollback_pin_fallback_and_kill_switch(api, two_released, releaser):
    first, second = two_released
    client = api(releaser)
    rolled = client.post(f"{V1}/programs/support/rollback/", {"reason": "regression"}, format="json")
    assert rolled.status_code == 201 and (rolled.json()["action"], rolled.json()["version"]) == ("rollback", first.pk)
    nothing = client.post(f"{V1}/programs/support/rollback/", {"reason": "again"}, format="json")
    assert error(nothing)["status"] == 409 and "nothing to roll back" in error(nothing)["detail"]
    no_fallback = client.post(f"{V1}/programs/support/kill-switch/", {"on": True, "reason": "stop"}, format="json")
    assert error(no_fallback) == {"status": 409, "code": "illegal_transition",
                                  "detail": "label 'production' of support has no pinned fallback version; pin one "
                                            "before engaging the kill switch"}
    pinned = client.post(f"{V1}/programs/support/pin-fallback/", {"version": second.pk, "reason": "safe"},
                         format="json")
    assert pinned.status_code == 201 and pinned.json()["action"] == ReleaseAction.FALLBACK_PINNED
    on = client.post(f"{V1}/programs/support/kill-switch/", {"on": True, "reason": "incident"}, format="json")
    assert on.status_code == 201 and on.json()["action"] == ReleaseAction.KILL_SWITCH_ON
    label = client.get(f"{V1}/labels/?program=support").json()["results"][0]
    assert (label["kill_switch"], label["serving_version"]) == (True, second.pk)
    actions = [h["action"] for h in results(client.get(f"{V1}/releases/?program=support"))]
    assert actions == ["kill_switch_on", "fallback_pinned", "rollback", "release", "release"]


def test_release_history_query_count_is_pinned(api, two_released, releaser, users, django_assert_max_num_queries):
    client = api(users["auditor"])
    with django_assert_max_num_queries(3):
        assert len(results(client.get(f"{V1}/releases/"))) == 2
    with django_assert_max_num_queries(3):
        assert len(results(client.get(f"{V1}/labels/"))) == 1


# --- production fetch -----------------------------------------------------------------------------------------


def test_bundle_fetch_etag_304_and_one_export_per_label_state(api, signing, two_released, users, releaser,
                                                             django_assert_max_num_queries):
    first, second = two_released
    service = users["reviewer3"]  # any program member; a service account in production
    client = api(service, token=True)
    response = client.get(BUNDLE)
    assert response.status_code == 200, response.content
    etag = response["ETag"]
    assert etag.startswith('"') and len(etag) == 66
    assert response["Cache-Control"] == "private, no-cache"
    verified = verify_bundle(response.json(), trusted_public_key=public_key())
    assert (verified.version_number, verified.manifest["release"]["label"]) == (second.number, "production")
    # Later fetches come from the cache: no new export, no new audit event, few queries.
    events = AuditEvent.objects.count()
    with django_assert_max_num_queries(1):  # token, user, rights and label state in one query
        assert client.get(BUNDLE).content == response.content
    not_modified = client.get(BUNDLE, HTTP_IF_NONE_MATCH=etag)
    assert not_modified.status_code == 304 and not_modified["ETag"] == etag and not_modified.content == b""
    assert client.get(BUNDLE, HTTP_IF_NONE_MATCH='"other", ' + etag).status_code == 304
    assert client.get(BUNDLE, HTTP_IF_NONE_MATCH='"other"').status_code == 200
    assert AuditEvent.objects.count() == events
    assert Export.objects.filter(label="production").count() == 1
    exported = AuditEvent.objects.filter(action="version.exported").get()
    assert exported.actor == service and "production fetches" in exported.reason
    # A label move changes what is served: a new bundle (one more export) with a new ETag.
    api(releaser).post(f"{V1}/programs/support/rollback/", {"reason": "regression"}, format="json")
    after = client.get(BUNDLE, HTTP_IF_NONE_MATCH=etag)
    assert after.status_code == 200 and after["ETag"] != etag
    assert after.json()["manifest"]["version"]["number"] == first.number
    assert Export.objects.filter(label="production").count() == 2


def test_bundle_follows_the_kill_switch(api, signing, two_released, releaser, users):
    first, second = two_released
    client = api(users["reviewer3"], token=True)
    assert client.get(BUNDLE).json()["manifest"]["version"]["number"] == second.number
    mover = api(releaser)
    mover.post(f"{V1}/programs/support/pin-fallback/", {"version": first.pk, "reason": "safe"}, format="json")
    mover.post(f"{V1}/programs/support/kill-switch/", {"on": True, "reason": "incident"}, format="json")
    served = client.get(BUNDLE).json()["manifest"]
    assert (served["version"]["number"], served["release"]) == (
        first.number, {"label": "production", "kill_switch": True, "serving": "fallback"})
    mover.post(f"{V1}/programs/support/kill-switch/", {"on": False, "reason": "resolved"}, format="json")
    assert client.get(BUNDLE).json()["manifest"]["version"]["number"] == second.number


def test_bundle_fetch_rights_match_program_visibility(api, signing, two_released, users, author):
    """The one-query fast path grants exactly what governance.permissions.is_member grants."""
    from governance.models import Program
    from governance.permissions import is_member

    program = Program.objects.get(slug="support")
    for name in ("author", "reviewer3", "releaser", "auditor", "admin", "outsider", "author2"):
        user = users[name]
        status = api(user, token=True).get(BUNDLE).status_code
        assert status == (200 if is_member(user, program) else 404), name
        assert status == api(user).get(BUNDLE).status_code, name  # the regular (session) path agrees
    users["reviewer3"].is_active = False
    users["reviewer3"].save(update_fields=["is_active"])
    assert api(users["reviewer3"], token=True).get(BUNDLE).status_code in (401, 403)


def test_bundle_fetch_wrong_users_and_labels(api, signing, two_released, outsider):
    assert error(api(outsider, token=True).get(BUNDLE)) == {
        "status": 404, "code": "not_found", "field": "label",
        "detail": "no release label 'production' in a program 'support' visible to you",
        "errors": {"label": ["no release label 'production' in a program 'support' visible to you"]}}
    assert api().get(BUNDLE).status_code == 403
    assert api(outsider, token=True).get(f"{V1}/programs/support/releases/staging/bundle").status_code == 404
    bad_token = api()
    bad_token.credentials(HTTP_AUTHORIZATION="Token nope")
    assert bad_token.get(BUNDLE).status_code in (401, 403)
