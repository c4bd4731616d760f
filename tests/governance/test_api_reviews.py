"""API: change requests (open, approve, reject, request changes, withdraw, resubmit) and reviews (read).

Signing steps need the password in the body with every kind of authentication: an API token never signs.
"""

from __future__ import annotations

import pytest

from governance.models import AuditEvent, ChangeRequestStatus, Review, VersionStatus
from tests.governance.api_support import V1, error, results

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db


def test_open_change_request(api, make_version, author):
    version = make_version()
    response = api(author).post(f"{V1}/change-requests/", {"version": version.pk, "title": "Better routing",
                                                            "impact": "low"}, format="json")
    assert response.status_code == 201, response.content
    assert (response.json()["status"], response.json()["version_number"]) == ("open", 1)
    # Evaluations feed the score gate, so the API does not take them from the proposer.
    version2 = make_version()
    forged = api(author).post(f"{V1}/change-requests/", {"version": version2.pk, "title": "t",
                                                          "evaluation": {"candidate": {"test": 1.0}}}, format="json")
    assert error(forged)["status"] == 400 and error(forged)["field"] == "evaluation"
    assert "set by the system's evaluations" in error(forged)["detail"]
    body = response.json()
    assert body["content_hash"] == version.content_hash and body["recommended"] is False
    assert body["candidate_evaluation"]["status"] == "queued" and body["baseline_evaluation"]["status"] == "queued"


def test_token_cannot_approve_without_password(api, make_cr, reviewer1, pw):
    cr = make_cr()
    client = api(reviewer1, token=True)
    missing = client.post(f"{V1}/change-requests/{cr.pk}/approve/", {}, format="json")
    assert error(missing)["status"] == 400 and error(missing)["errors"] == {
        "password": ["This field is required."], "content_hash": ["This field is required."]}
    wrong = client.post(f"{V1}/change-requests/{cr.pk}/approve/", {"content_hash": cr.version.content_hash, "password": "guess"}, format="json")
    assert error(wrong) == {"status": 403, "code": "reauthentication_failed",
                            "detail": "re-authentication failed for user 'reviewer1': wrong password "
                                      "(the attempt was recorded)"}
    failed = AuditEvent.objects.filter(action="signature.failed").get()
    assert (failed.actor, failed.after["attempted"]) == (reviewer1, "approve")
    assert not Review.objects.exists()
    ok = client.post(f"{V1}/change-requests/{cr.pk}/approve/", {"content_hash": cr.version.content_hash, "password": pw(reviewer1), "reason": "fine"},
                     format="json")
    assert ok.status_code == 200, ok.content
    assert (ok.json()["decision"], ok.json()["auth_method"], ok.json()["printed_name"]) == (
        "approve", "password", "Reviewer1 Example")


def test_two_approvals_approve_the_version(api, make_cr, reviewer1, reviewer2, pw):
    cr = make_cr()
    for user in (reviewer1, reviewer2):
        assert api(user).post(f"{V1}/change-requests/{cr.pk}/approve/", {"content_hash": cr.version.content_hash, "password": pw(user)},
                              format="json").status_code == 200
    detail = api(reviewer1).get(f"{V1}/change-requests/{cr.pk}/").json()
    assert detail["status"] == ChangeRequestStatus.APPROVED
    cr.version.refresh_from_db()
    assert cr.version.status == VersionStatus.APPROVED
    closed = api(reviewer1).post(f"{V1}/change-requests/{cr.pk}/approve/", {"content_hash": cr.version.content_hash, "password": pw(reviewer1)},
                                 format="json")
    assert error(closed) == {"status": 409, "code": "illegal_transition",
                             "detail": f"change request {cr.pk} is approved; only open change requests can "
                                       "be approved"}


def test_segregation_of_duties_and_wrong_users(api, make_cr, author, outsider, users, pw):
    cr = make_cr()
    own = api(author).post(f"{V1}/change-requests/{cr.pk}/approve/", {"content_hash": cr.version.content_hash, "password": pw(author)}, format="json")
    assert own.status_code == 403 and own.json()["code"] == "permission_denied"
    assert api(outsider).post(f"{V1}/change-requests/{cr.pk}/approve/", {"content_hash": cr.version.content_hash, "password": pw(outsider)},
                              format="json").status_code == 404
    assert api(outsider).get(f"{V1}/change-requests/{cr.pk}/").status_code == 404
    releaser = api(users["releaser"]).post(f"{V1}/change-requests/{cr.pk}/approve/",
                                           {"password": pw(users["releaser"]), "content_hash": cr.version.content_hash},
                                           format="json")
    assert error(releaser) == {"status": 403, "code": "permission_denied",
                               "detail": "user 'releaser' needs the reviewer role to review change requests on program support"}


def test_reject_needs_reason_and_password(api, make_cr, reviewer1, pw):
    cr = make_cr()
    client = api(reviewer1, token=True)
    no_reason = client.post(f"{V1}/change-requests/{cr.pk}/reject/", {"content_hash": cr.version.content_hash, "password": pw(reviewer1)}, format="json")
    assert no_reason.status_code == 400 and no_reason.json()["field"] == "reason"
    no_password = client.post(f"{V1}/change-requests/{cr.pk}/reject/", {"reason": "worse", "content_hash": cr.version.content_hash}, format="json")
    assert no_password.status_code == 400 and no_password.json()["field"] == "password"
    rejected = client.post(f"{V1}/change-requests/{cr.pk}/reject/", {"content_hash": cr.version.content_hash, "reason": "worse", "password": pw(reviewer1)},
                           format="json")
    assert rejected.status_code == 200 and rejected.json()["decision"] == "reject"
    cr.refresh_from_db()
    assert cr.status == ChangeRequestStatus.REJECTED


def test_request_changes_resubmit_withdraw(api, make_cr, author, reviewer1, pw):
    cr = make_cr()
    back = api(reviewer1).post(f"{V1}/change-requests/{cr.pk}/request-changes/",
                               {"content_hash": cr.version.content_hash, "reason": "explain refunds", "password": pw(reviewer1)}, format="json")
    assert back.status_code == 200 and back.json()["decision"] == "request_changes"
    assert api(author).get(f"{V1}/versions/{cr.version_id}/").json()["status"] == "draft"
    resubmitted = api(author).post(f"{V1}/change-requests/{cr.pk}/resubmit/", {"reason": "done"}, format="json")
    assert resubmitted.status_code == 200 and resubmitted.json()["status"] == "open"
    assert api(reviewer1).post(f"{V1}/change-requests/{cr.pk}/withdraw/", {},
                               format="json").status_code == 403
    withdrawn = api(author).post(f"{V1}/change-requests/{cr.pk}/withdraw/", {"reason": "later"}, format="json")
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    twice = api(author).post(f"{V1}/change-requests/{cr.pk}/resubmit/", {}, format="json")
    assert twice.status_code == 409


def test_reviews_are_read_only_and_listed_with_pinned_queries(api, make_cr, approve, reviewer1, reviewer2, users,
                                                              django_assert_max_num_queries):
    for _ in range(4):
        cr = make_cr()
        approve(cr, reviewer1)
        approve(cr, reviewer2)
    client = api(users["auditor"])
    with django_assert_max_num_queries(3):
        listed = results(client.get(f"{V1}/reviews/?program=support&decision=approve"))
    assert len(listed) == 8 and {r["reviewer"]["username"] for r in listed} == {"reviewer1", "reviewer2"}
    assert client.post(f"{V1}/reviews/", {}, format="json").status_code == 405
    assert results(api(users["outsider"]).get(f"{V1}/reviews/")) == []
    with django_assert_max_num_queries(4):
        assert len(results(client.get(f"{V1}/change-requests/?status=approved"))) == 4
