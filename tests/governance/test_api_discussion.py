"""The discussion API: comments, assignments, one's own notifications and settings (400 naming the field, 403, 404
for what one may not see, 409 for a step the change request no longer takes)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from governance.actions import discussion as discussion_actions
from governance.actions import withdraw_change_request
from governance.models import AuditEvent, Comment, ReviewerAssignment
from tests.governance.api_support import V1, error, results

pytest_plugins = ["tests.governance.api_fixtures"]
pytestmark = pytest.mark.django_db


@pytest.fixture
def cr(make_cr):
    return make_cr(evaluated=False)


def test_comment_thread_through_the_api(api, cr, reviewer1, author, audit):
    response = api(reviewer1).post(f"{V1}/comments/", {"change_request": cr.pk, "body": "@author why?",
                                                      "anchor": "instruction", "predictor": "classify"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["anchor"], body["predictor"], body["mentions"], body["author"]["username"]) == \
        ("instruction", "classify", ["author"], "reviewer1")
    assert body["version"] == cr.version.number and body["content_hash"] == cr.version.content_hash
    reply = api(author).post(f"{V1}/comments/", {"change_request": cr.pk, "body": "Because.",
                                                "parent": body["id"]}, format="json")
    assert reply.status_code == 201 and reply.json()["parent"] == body["id"]
    edited = api(author).patch(f"{V1}/comments/{reply.json()['id']}/", {"body": "Because of the labels."},
                               format="json")
    assert edited.status_code == 200 and edited.json()["edited_at"]
    resolved = api(author).post(f"{V1}/comments/{body['id']}/resolve/")
    assert resolved.status_code == 200 and resolved.json()["resolved_by"]["username"] == "author"
    assert error(api(author).post(f"{V1}/comments/{body['id']}/resolve/"))["code"] == "illegal_transition"
    assert api(author).post(f"{V1}/comments/{body['id']}/reopen/").json()["resolved_at"] is None
    listed = results(api(reviewer1).get(f"{V1}/comments/", {"change_request": cr.pk}))
    assert [c["id"] for c in listed] == [body["id"], reply.json()["id"]]
    assert audit.actions() == ["comment.added", "comment.added", "comment.edited", "comment.resolved",
                               "comment.reopened"]


def test_comment_refusals(api, cr, reviewer1, author, outsider, releaser):
    bad = api(reviewer1).post(f"{V1}/comments/", {"change_request": cr.pk, "body": "hi", "anchor": "demo",
                                                 "predictor": "classify", "demo_index": 0}, format="json")
    assert error(bad)["status"] == 400 and error(bad)["field"] == "demo_index"
    assert "has 0 demos" in error(bad)["detail"]
    mention = api(reviewer1).post(f"{V1}/comments/", {"change_request": cr.pk, "body": "@outsider look"},
                                  format="json")
    assert (mention.status_code, mention.json()["field"]) == (400, "body")
    missing = api(reviewer1).post(f"{V1}/comments/", {"change_request": cr.pk}, format="json")
    assert missing.status_code == 400 and "body" in missing.json()["errors"]
    hidden = api(outsider).post(f"{V1}/comments/", {"change_request": cr.pk, "body": "hello"}, format="json")
    assert hidden.status_code == 400 and "change_request" in hidden.json()["errors"]  # not visible: no such id
    review = api(releaser).post(f"{V1}/comments/", {"change_request": cr.pk, "body": "ok", "review": True},
                                format="json")
    assert review.status_code == 403
    comment = discussion_actions.add_comment(cr, actor=reviewer1, body="Mine.")
    assert api(author).patch(f"{V1}/comments/{comment.pk}/", {"body": "yours"}, format="json").status_code == 403
    assert api(outsider).get(f"{V1}/comments/{comment.pk}/").status_code == 404
    withdraw_change_request(cr, actor=author, reason="later")
    closed = api(reviewer1).post(f"{V1}/comments/", {"change_request": cr.pk, "body": "late"}, format="json")
    assert error(closed)["status"] == 409
    assert Comment.objects.count() == 1


def test_assignments_through_the_api(api, cr, author, reviewer1, releaser, audit):
    due = (timezone.now().date() + dt.timedelta(days=3)).isoformat()
    response = api(author).post(f"{V1}/assignments/", {"change_request": cr.pk, "reviewer": "reviewer1",
                                                      "due_date": due}, format="json")
    assert response.status_code == 201, response.content
    assignment = response.json()
    assert (assignment["reviewer"]["username"], assignment["due_date"]) == ("reviewer1", due)
    assert [a["id"] for a in results(api(reviewer1).get(f"{V1}/assignments/", {"change_request": cr.pk}))] == \
        [assignment["id"]]
    past = api(author).post(f"{V1}/assignments/", {"change_request": cr.pk, "reviewer": "reviewer2",
                                                  "due_date": "2001-01-01"}, format="json")
    assert (past.status_code, past.json()["field"]) == (400, "due_date")
    assert api(releaser).post(f"{V1}/assignments/", {"change_request": cr.pk, "reviewer": "reviewer2"},
                              format="json").status_code == 403
    removed = api(author).delete(f"{V1}/assignments/{assignment['id']}/")
    assert removed.status_code == 200 and removed.json()["removed_by"]["username"] == "author"
    assert api(author).delete(f"{V1}/assignments/{assignment['id']}/").status_code == 404  # no longer active
    assert results(api(author).get(f"{V1}/assignments/", {"change_request": cr.pk, "active": "false"}))
    assert audit.actions() == ["reviewer.assigned", "reviewer.unassigned"]
    assert ReviewerAssignment.objects.get().removed_at is not None


def test_own_notifications_and_settings(api, cr, reviewer1, author, settings, django_capture_on_commit_callbacks):
    settings.GOVERNANCE_NOTIFY_DISPATCH = "inline"
    with django_capture_on_commit_callbacks(execute=True):
        discussion_actions.add_comment(cr, actor=reviewer1, body="@author one")
        discussion_actions.add_comment(cr, actor=reviewer1, body="@author two")
    mine = results(api(author).get(f"{V1}/notifications/", {"unread": "true"}))
    assert [n["kind"] for n in mine] == ["mentioned", "mentioned"] and mine[0]["text"].startswith("Reviewer1")
    assert results(api(reviewer1).get(f"{V1}/notifications/")) == []
    assert api(reviewer1).post(f"{V1}/notifications/{mine[0]['id']}/read/").status_code == 404  # not theirs
    read = api(author).post(f"{V1}/notifications/{mine[0]['id']}/read/")
    assert read.status_code == 200 and read.json()["read_at"]
    assert api(author).post(f"{V1}/notifications/read/", {}, format="json").json() == {"marked": 1}
    assert results(api(author).get(f"{V1}/notifications/", {"unread": "true"})) == []

    assert api(author).get(f"{V1}/notifications/settings/").json()["settings"]["commented"] == \
        {"in_app": True, "email": False}
    changed = api(author).patch(f"{V1}/notifications/settings/", {"settings": {"approved": {"email": False}}},
                                format="json")
    assert changed.status_code == 200 and changed.json()["settings"]["approved"] == {"in_app": True, "email": False}
    assert AuditEvent.objects.filter(action="notification_settings.changed", actor=author).count() == 1
    bad = api(author).patch(f"{V1}/notifications/settings/", {"settings": {"approved": {"email": "no"}}},
                            format="json")
    assert (bad.status_code, bad.json()["field"]) == (400, "settings.approved.email")
    assert api().get(f"{V1}/notifications/").status_code in (401, 403)
