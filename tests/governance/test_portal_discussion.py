"""The discussion in the portal: the change request page's section and comment links, the forms (400 naming the
field, 403/404 for who may not), the bell and the notifications pages."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django.utils import timezone

from governance.actions import create_version
from governance.actions import discussion as discussion_actions
from governance.models import AuditEvent, Comment, Notification, ReviewerAssignment
from tests.governance.conftest import payload_with

pytestmark = pytest.mark.django_db

DEMO = {"ticket": "I was charged twice", "category": "billing"}


@pytest.fixture
def cr(program, author, make_cr):
    payload = payload_with(program, "Classify the ticket into one category.")
    payload["program"]["predictors"][0]["demos"] = [copy.deepcopy(DEMO)]
    return make_cr(version=create_version(program, actor=author, payload=payload), evaluated=False)


@pytest.fixture
def as_user(client, pw):
    def login(user):
        client.logout()
        assert client.login(username=user.get_username(), password=pw(user))
        return client
    return login


@pytest.fixture
def inline(settings):
    settings.GOVERNANCE_NOTIFY_DISPATCH = "inline"


def page(client, cr) -> str:
    response = client.get(f"/change-requests/{cr.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_change_request_page_has_the_discussion_and_links_beside_the_diff(cr, reviewer1, as_user):
    discussion_actions.add_comment(cr, actor=reviewer1, body="Why this demo?", anchor="demo", predictor="classify",
                                   demo_index=0)
    html = page(as_user(reviewer1), cr)
    assert 'id="discussion"' in html and "Why this demo?" in html and "on <a href=\"#diff-h\">demo 1 of classify" in html
    assert f'href="/change-requests/{cr.pk}/?anchor=instruction:classify#new-comment"' in html  # beside the instruction
    assert 'data-anchor="demo:classify:0">1 comment<' in html  # beside the added demo, with its count
    assert 'id="new-comment"' in html and "Post as a review comment" in html
    assert 'id="assign-button"' in html


def test_the_anchor_link_preselects_the_anchor(cr, author, as_user):
    html = as_user(author).get(f"/change-requests/{cr.pk}/?anchor=instruction:classify").content.decode()
    assert '<option value="instruction:classify" selected>' in html
    assert "Post as a review comment" not in html  # the author may comment, not post a review comment


def test_posting_a_comment_with_a_mention(cr, reviewer1, author, as_user, inline):
    client = as_user(reviewer1)
    response = client.post(f"/change-requests/{cr.pk}/discussion/comment/",
                           {"body": "@author please name the labels", "anchor": "instruction:classify"})
    comment = Comment.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"#comment-{comment.pk}")
    assert (comment.anchor, comment.predictor) == ("instruction", "classify")
    assert AuditEvent.objects.filter(action="comment.added", object_id=str(comment.pk)).exists()
    html = page(client, cr)
    assert '<strong class="mention">@author</strong> please name the labels' in html


def test_a_refused_comment_shows_the_reason_at_the_field_and_keeps_the_text(cr, reviewer1, as_user):
    client = as_user(reviewer1)
    response = client.post(f"/change-requests/{cr.pk}/discussion/comment/",
                           {"body": "ask @outsider about it", "anchor": ""})
    html = response.content.decode()
    assert response.status_code == 400
    assert "@outsider is not a user who can see program support" in html and "ask @outsider about it" in html
    assert not Comment.objects.exists()
    response = client.post(f"/change-requests/{cr.pk}/discussion/comment/", {"body": "", "anchor": ""})
    assert response.status_code == 400 and "This field is required." in response.content.decode()


def test_forced_posts_get_the_actions_refusal(cr, author, outsider, releaser, reviewer1, as_user):
    response = as_user(author).post(f"/change-requests/{cr.pk}/discussion/comment/",
                                    {"body": "self-review", "anchor": "", "review": "on"})
    assert response.status_code == 403 and "reviewer role" in response.content.decode()  # not offered, and refused
    assert not Comment.objects.exists()
    response = as_user(outsider).post(f"/change-requests/{cr.pk}/discussion/comment/", {"body": "hello"})
    assert response.status_code == 404  # not a member: the change request does not exist for them
    comment = discussion_actions.add_comment(cr, actor=reviewer1, body="Question.")
    response = as_user(releaser).post(f"/change-requests/{cr.pk}/discussion/{comment.pk}/resolve/")
    assert response.status_code == 403 and "may not resolve or reopen" in response.content.decode()
    response = as_user(releaser).post(f"/change-requests/{cr.pk}/discussion/{comment.pk}/edit/",
                                      {f"edit-{comment.pk}-body": "mine now"})
    assert response.status_code == 403
    assert Comment.objects.get(pk=comment.pk).body == "Question."


def test_reply_edit_resolve_reopen(cr, reviewer1, author, as_user):
    comment = discussion_actions.add_comment(cr, actor=reviewer1, body="Question.")
    client = as_user(author)
    assert client.post(f"/change-requests/{cr.pk}/discussion/{comment.pk}/reply/",
                       {f"reply-{comment.pk}-body": "Answer."}).status_code == 302
    reply = Comment.objects.get(parent=comment)
    assert client.post(f"/change-requests/{cr.pk}/discussion/{reply.pk}/edit/",
                       {f"edit-{reply.pk}-body": "Better answer."}).status_code == 302
    assert client.post(f"/change-requests/{cr.pk}/discussion/{comment.pk}/resolve/").status_code == 302
    html = page(client, cr)
    assert "Better answer." in html and "resolved" in html and "Reopen thread" in html
    assert client.post(f"/change-requests/{cr.pk}/discussion/{comment.pk}/resolve/",
                       {"resolved": "0"}).status_code == 302
    assert Comment.objects.get(pk=comment.pk).resolved_at is None
    response = client.post(f"/change-requests/{cr.pk}/discussion/{comment.pk}/reply/",
                           {f"reply-{comment.pk}-body": "  "})
    assert response.status_code == 400


def test_assign_and_unassign_in_the_portal(cr, author, reviewer1, users, as_user):
    client = as_user(author)
    due = (timezone.now().date() + dt.timedelta(days=2)).isoformat()
    response = client.post(f"/change-requests/{cr.pk}/discussion/assign/", {"reviewer": "reviewer1", "due_date": due})
    assert response.status_code == 302 and response["Location"].endswith("#assignments")
    html = page(client, cr)
    assert f'<time datetime="{due}">{due}</time>' in html and "Unassign" in html
    response = client.post(f"/change-requests/{cr.pk}/discussion/assign/", {"reviewer": "author2"})
    assert response.status_code == 400 and "may not review change request" in response.content.decode()
    response = client.post(f"/change-requests/{cr.pk}/discussion/assign/", {"reviewer": "nobody"})
    assert response.status_code == 400 and "no user &#x27;nobody&#x27;" in response.content.decode()
    assert client.post(f"/change-requests/{cr.pk}/discussion/unassign/reviewer1/").status_code == 302
    assert not ReviewerAssignment.objects.filter(removed_at=None).exists()
    assert as_user(users["releaser"]).post(f"/change-requests/{cr.pk}/discussion/assign/",
                                           {"reviewer": "reviewer1"}).status_code == 403


def test_bell_list_open_and_settings(cr, reviewer1, author, as_user, inline, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        comment = discussion_actions.add_comment(cr, actor=reviewer1, body="@author look here")
    client = as_user(author)
    html = client.get("/programs/").content.decode()
    assert 'id="bell-count">1<' in html
    html = client.get("/notifications/").content.decode()
    note = Notification.objects.get(recipient=author)
    assert "mentioned you" in html and f'id="notification-{note.pk}"' in html
    response = client.post(f"/notifications/{note.pk}/open/")
    assert response.status_code == 302 and response["Location"] == f"/change-requests/{cr.pk}/#comment-{comment.pk}"
    assert 'id="bell-count">0<' in client.get("/programs/").content.decode()
    assert client.get("/notifications/?show=unread").content.decode().count("Nothing unread.") == 1
    assert as_user(reviewer1).post(f"/notifications/{note.pk}/open/").status_code == 404  # someone else's

    client = as_user(author)
    html = client.get("/notifications/settings/").content.decode()
    assert 'name="mentioned__email"' in html and "has no email address" in html
    assert client.post("/notifications/settings/", {"mentioned__in_app": "on"}).status_code == 302
    from governance.actions.notifications import settings_of
    assert settings_of(author)["mentioned"] == {"in_app": True, "email": False}
    assert settings_of(author)["approved"] == {"in_app": False, "email": False}  # every unticked box is a choice


def test_mark_all_read(cr, reviewer1, author, as_user, inline, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        discussion_actions.add_comment(cr, actor=reviewer1, body="@author one")
        discussion_actions.add_comment(cr, actor=reviewer1, body="@author two")
    client = as_user(author)
    assert client.post("/notifications/read/").status_code == 302
    assert not Notification.objects.filter(recipient=author, read_at=None).exists()


def test_the_discussion_costs_a_fixed_number_of_queries(cr, reviewer1, reviewer2, author, as_user,
                                                       django_assert_max_num_queries):
    def count() -> int:
        client = as_user(reviewer1)
        with django_assert_max_num_queries(60) as queries:
            page(client, cr)
        return len(queries.captured_queries)

    discussion_actions.add_comment(cr, actor=reviewer1, body="@author first", anchor="instruction",
                                   predictor="classify")
    count()  # the first page of a test fills caches (content types, ...)
    before = count()
    for n in range(4):
        root = discussion_actions.add_comment(cr, actor=reviewer2, body=f"@author thread {n}", anchor="demo",
                                              predictor="classify", demo_index=0)
        discussion_actions.add_comment(cr, actor=author, body=f"reply {n}", parent=root)
    discussion_actions.assign_reviewer(cr, actor=author, reviewer=reviewer2)
    assert count() == before
