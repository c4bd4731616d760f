"""API: prompt versions (create, edit, submit, withdraw, retire) and exports, as the right and the wrong user."""

from __future__ import annotations

import pytest

from governance.models import AuditEvent, Export, VersionStatus
from governance.signing import public_key
from optimizer.bundle import verify_bundle
from tests.governance.api_support import V1, error, results
from tests.governance.conftest import payload_with

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db


def test_create_edit_submit(api, program, author):
    client = api(author)
    created = client.post(f"{V1}/versions/", {"program": "support", "note": "first"}, format="json")
    assert created.status_code == 201, created.content
    version = created.json()
    assert (version["number"], version["status"], version["origin"]) == (1, "draft", "manual")
    payload = payload_with(program, "Classify tersely.")
    edited = client.patch(f"{V1}/versions/{version['id']}/", {"payload": payload, "reason": "tighter"}, format="json")
    assert edited.status_code == 200
    assert edited.json()["payload"]["program"]["predictors"][0]["signature"]["instructions"] == "Classify tersely."
    assert edited.json()["content_hash"] != version["content_hash"]
    submitted = client.post(f"{V1}/versions/{version['id']}/submit/", {"title": "Terse", "ticket_ref": "CHG-1"},
                            format="json")
    assert submitted.status_code == 201
    assert (submitted.json()["status"], submitted.json()["version"], submitted.json()["ticket_ref"]) == (
        "open", version["id"], "CHG-1")
    assert client.get(f"{V1}/versions/{version['id']}/").json()["status"] == "in_review"


def test_illegal_steps_are_409_with_the_domain_message(api, make_cr, make_version, author, releaser):
    cr = make_cr()
    again = api(author).post(f"{V1}/versions/{cr.version_id}/submit/", {}, format="json")
    assert error(again) == {"status": 409, "code": "illegal_transition",
                            "detail": f"version 1 already has change request {cr.pk} (open)"}
    edit = api(author).patch(f"{V1}/versions/{cr.version_id}/", {"note": "x"}, format="json")
    assert error(edit) == {"status": 409, "code": "illegal_transition",
                           "detail": "version 1 is in_review; only draft versions can be edited (create a new "
                                     "version instead)"}
    draft = make_version()
    retire = api(releaser).post(f"{V1}/versions/{draft.pk}/retire/", {"reason": "old"}, format="json")
    assert error(retire) == {"status": 409, "code": "illegal_transition",
                             "detail": "version 2 is draft; only approved versions can be retired"}


def test_bad_input_is_400_with_the_field(api, make_version, author):
    version = make_version()
    client = api(author)
    bad_payload = client.patch(f"{V1}/versions/{version.pk}/", {"payload": {"program": {}}}, format="json")
    assert bad_payload.status_code == 400 and bad_payload.json()["field"] == "payload"
    not_object = client.patch(f"{V1}/versions/{version.pk}/", {"payload": [1]}, format="json")
    assert error(not_object)["errors"] == {"payload": ["must be a JSON object"]}
    no_reason = client.post(f"{V1}/versions/{version.pk}/withdraw/", {}, format="json")
    assert no_reason.json()["field"] == "reason"
    origin = client.post(f"{V1}/versions/", {"program": "support", "origin": "optimizer"}, format="json")
    assert origin.json()["field"] == "origin"


def test_wrong_users(api, make_version, users, outsider):
    version = make_version()
    assert api(outsider).get(f"{V1}/versions/{version.pk}/").status_code == 404
    assert api(outsider).patch(f"{V1}/versions/{version.pk}/", {"note": "x"}, format="json").status_code == 404
    other_author = api(users["author2"]).patch(f"{V1}/versions/{version.pk}/", {"note": "x"}, format="json")
    assert error(other_author) == {"status": 403, "code": "permission_denied",
                                   "detail": "only the author of version 1 (author) may edit it"}
    reviewer = api(users["reviewer1"]).post(f"{V1}/versions/", {"program": "support"}, format="json")
    assert reviewer.status_code == 403


def test_withdraw_and_retire(api, make_version, make_approved, author, releaser):
    draft = make_version()
    withdrawn = api(author).post(f"{V1}/versions/{draft.pk}/withdraw/", {"reason": "not needed"}, format="json")
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    approved = make_approved()
    retired = api(releaser).post(f"{V1}/versions/{approved.pk}/retire/", {"reason": "superseded"}, format="json")
    assert retired.status_code == 200 and retired.json()["status"] == VersionStatus.RETIRED
    assert AuditEvent.objects.filter(action="version.retired", reason="superseded").count() == 1


def test_export_of_approved_version_returns_a_verifiable_bundle(api, signing, make_approved, make_version, releaser,
                                                                outsider):
    version = make_approved()
    response = api(releaser).post(f"{V1}/versions/{version.pk}/export/", {"reason": "for the auditors"},
                                  format="json")
    assert response.status_code == 200, response.content
    verified = verify_bundle(response.json(), trusted_public_key=public_key())
    assert verified.content_hash == version.content_hash
    assert [a["name"] for a in verified.approvals] == ["Reviewer1 Example", "Reviewer2 Example"]
    assert Export.objects.filter(version=version).count() == 1
    assert AuditEvent.objects.filter(action="version.exported").last().reason == "for the auditors"
    draft = make_version()
    assert error(api(releaser).post(f"{V1}/versions/{draft.pk}/export/", {}, format="json")) == {
        "status": 409, "code": "illegal_transition",
        "detail": f"version {draft.number} is draft; only approved versions can be exported"}
    assert api(outsider).post(f"{V1}/versions/{version.pk}/export/", {}, format="json").status_code == 404
    exports = results(api(releaser).get(f"{V1}/exports/?program=support"))
    assert [(e["version"], e["exported_by"]["username"]) for e in exports] == [(version.pk, "releaser")]


def test_export_without_a_signing_key_is_503_not_500(api, make_approved, releaser, settings, tmp_path):
    settings.GOVERNANCE_SIGNING_KEY_PATH = tmp_path / "missing.pem"
    settings.GOVERNANCE_SIGNING_KEY_PEM = ""
    version = make_approved()
    response = api(releaser).post(f"{V1}/versions/{version.pk}/export/", {}, format="json")
    assert response.status_code == 503 and response.json()["code"] == "unavailable"


def test_version_list_query_count_is_pinned(api, make_version, author, django_assert_max_num_queries):
    for _ in range(10):
        make_version()
    client = api(author)
    with django_assert_max_num_queries(4):
        listed = results(client.get(f"{V1}/versions/?program=support&status=draft"))
    assert [v["number"] for v in listed] == list(range(10, 0, -1))
