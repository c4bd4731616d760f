"""Discussion actions: comments (threads, anchors, mentions, review comments), reviewer assignments, and the
notifications they and the workflow's signals produce (rows, settings, email through Django's framework)."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone

from governance.actions import discussion as discussion_actions
from governance.actions import notifications as notification_actions
from governance.actions import request_changes
from governance.actions.runs import finish_run, start_run
from governance.actions import create_version, import_dataset, open_change_request
from governance.errors import IllegalTransition, InvalidInput, NotFound, PermissionDenied
from governance.models import (
    ChangeRequest,
    Comment,
    EmailStatus,
    Notification,
    NotificationKind,
    Review,
    ReviewerAssignment,
    RunStatus,
)
from tests.governance.conftest import payload_with, seen
from tests.optimizer.simulated import load_rows

DEMOS = [{"ticket": "I was charged twice", "category": "billing"},
         {"ticket": "Where is my parcel?", "category": "shipping"}]


@pytest.fixture
def notify_inline(settings):
    """Emails are sent in the caller (no pool thread that could not see the test's uncommitted rows)."""
    settings.GOVERNANCE_NOTIFY_DISPATCH = "inline"
    settings.GOVERNANCE_PORTAL_URL = "https://governance.example"


@pytest.fixture
def emails(users):
    """Everyone has an address (no action changes an address today, so the fixture sets them directly)."""
    for user in users.values():
        type(user).objects.filter(pk=user.pk).update(email=f"{user.username}@example.com")
        user.email = f"{user.username}@example.com"
    return users


@pytest.fixture
def cr(program, author, make_cr):
    """An open change request whose candidate has two demos (so demo anchors have something to point at)."""
    payload = payload_with(program, "Classify the ticket into one category.")
    payload["program"]["predictors"][0]["demos"] = copy.deepcopy(DEMOS)
    version = create_version(program, actor=author, payload=payload)
    return make_cr(version=version, evaluated=False)


def comments_and_events(audit):
    return Comment.objects.count(), len(audit.events())


# --- comments -----------------------------------------------------------------------------------------------


def test_anchored_comment_with_a_mention_is_audited_and_leaves_the_signed_content_alone(cr, reviewer1, author, audit):
    before_hash, before_payload = cr.version.content_hash, copy.deepcopy(cr.version.payload)
    comment = discussion_actions.add_comment(cr, actor=reviewer1, body="@author why drop the label list?",
                                             anchor="instruction", predictor="classify")
    assert (comment.anchor, comment.predictor, comment.demo_index) == ("instruction", "classify", None)
    assert comment.anchor_label == "instruction of classify"
    assert list(comment.mentions.all()) == [author]
    assert comment.content_hash == before_hash
    [event] = audit.events()
    assert (event.action, event.object_type, event.program_id) == ("comment.added", "Comment", cr.program_id)
    assert event.after["mentions"] == ["author"] and event.after["anchor"] == "instruction"
    cr.version.refresh_from_db()
    assert (cr.version.content_hash, cr.version.payload) == (before_hash, before_payload)


def test_demo_anchor_and_replies_join_the_thread_of_the_first_comment(cr, reviewer1, author, reviewer2):
    root = discussion_actions.add_comment(cr, actor=reviewer1, body="This demo is mislabeled.", anchor="demo",
                                          predictor="classify", demo_index=1)
    assert root.anchor_label == "demo 2 of classify"
    reply = discussion_actions.add_comment(cr, actor=author, body="It is shipping, see the ticket.", parent=root)
    nested = discussion_actions.add_comment(cr, actor=reviewer2, body="Agreed.", parent=reply)
    assert reply.parent_id == root.pk and nested.parent_id == root.pk  # one level: replies to replies join the thread
    assert (nested.anchor, nested.predictor, nested.demo_index) == ("demo", "classify", 1)
    [thread] = discussion_actions.threads(cr)
    assert thread.pk == root.pk and [c.pk for c in thread.thread_replies] == [reply.pk, nested.pk]


@pytest.mark.parametrize("kwargs, field", [
    ({"body": "   "}, "body"),
    ({"body": "x" * 10_001}, "body"),
    ({"body": "hi", "anchor": "paragraph", "predictor": "classify"}, "anchor"),
    ({"body": "hi", "predictor": "classify"}, "anchor"),
    ({"body": "hi", "anchor": "instruction", "predictor": "nope"}, "predictor"),
    ({"body": "hi", "anchor": "instruction", "predictor": "classify", "demo_index": 0}, "demo_index"),
    ({"body": "hi", "anchor": "demo", "predictor": "classify", "demo_index": 2}, "demo_index"),
    ({"body": "hi", "anchor": "demo", "predictor": "classify", "demo_index": "first"}, "demo_index"),
    ({"body": "hi", "anchor": "demo", "predictor": "classify"}, "demo_index"),
    ({"body": "ask @outsider"}, "body"),  # not a member of the program
    ({"body": "ask @nobody-here"}, "body"),
])
def test_bad_comment_input_is_refused_naming_the_field_and_writes_nothing(cr, reviewer1, audit, kwargs, field):
    before = comments_and_events(audit)
    with pytest.raises(InvalidInput) as refused:
        discussion_actions.add_comment(cr, actor=reviewer1, **kwargs)
    assert refused.value.field == field
    assert comments_and_events(audit) == before


def test_an_email_address_is_no_mention(cr, reviewer1):
    comment = discussion_actions.add_comment(cr, actor=reviewer1, body="mail support@example.com about it")
    assert list(comment.mentions.all()) == []


def test_only_members_comment_and_only_open_changes_take_comments(cr, outsider, reviewer1, author, audit):
    with pytest.raises(PermissionDenied, match="not a member of program support"):
        discussion_actions.add_comment(cr, actor=outsider, body="drive-by")
    from governance.actions import withdraw_change_request
    withdraw_change_request(cr, actor=author, reason="not now")
    audit.mark()
    with pytest.raises(IllegalTransition, match="withdrawn; only open or changes_requested change requests can be "
                                                "commented on"):
        discussion_actions.add_comment(cr, actor=reviewer1, body="too late")
    assert audit.events() == []


def test_a_review_comment_is_no_signature_and_belongs_to_reviewers(cr, reviewer1, author, releaser, audit):
    comment = discussion_actions.add_comment(cr, actor=reviewer1, body="Looks plausible; waiting for the scores.",
                                             review=True)
    assert comment.review and audit.actions() == ["review.commented"]
    assert not Review.objects.filter(change_request=cr).exists()  # nothing signed, nothing counts
    with pytest.raises(PermissionDenied, match="reviewer role"):
        discussion_actions.add_comment(cr, actor=author, body="I approve of myself", review=True)
    with pytest.raises(PermissionDenied, match="reviewer role"):
        discussion_actions.add_comment(cr, actor=releaser, body="ship it", review=True)
    with pytest.raises(InvalidInput) as refused:
        discussion_actions.add_comment(cr, actor=reviewer1, body="again", review=True, parent=comment)
    assert refused.value.field == "review"


def test_edit_resolve_reopen(cr, reviewer1, reviewer2, author, audit):
    comment = discussion_actions.add_comment(cr, actor=reviewer1, body="Typo: 'categroy'.", anchor="instruction",
                                             predictor="classify")
    with pytest.raises(PermissionDenied, match=f"only the author of comment {comment.pk}"):
        discussion_actions.edit_comment(comment, actor=author, body="rewritten by someone else")
    audit.mark()
    edited = discussion_actions.edit_comment(comment, actor=reviewer1, body="Typo: 'categroy' (line 1).")
    assert edited.edited_at is not None
    [event] = audit.events()
    assert event.action == "comment.edited" and event.before["body"] == "Typo: 'categroy'."
    assert event.after["body"] == "Typo: 'categroy' (line 1)."

    discussion_actions.resolve_comment(comment, actor=author)  # a proposer settles it
    with pytest.raises(IllegalTransition, match="resolved already"):
        discussion_actions.resolve_comment(comment, actor=reviewer2)
    with pytest.raises(IllegalTransition, match="reopen it to reply"):
        discussion_actions.add_comment(cr, actor=reviewer2, body="one more thing", parent=comment)
    with pytest.raises(IllegalTransition, match="reopen it to edit"):
        discussion_actions.edit_comment(comment, actor=reviewer1, body="late edit")
    discussion_actions.reopen_comment(comment, actor=reviewer2)
    with pytest.raises(IllegalTransition, match="not resolved"):
        discussion_actions.reopen_comment(comment, actor=reviewer2)
    assert audit.actions()[-2:] == ["comment.resolved", "comment.reopened"]


def test_replies_are_not_resolved_on_their_own_and_strangers_do_not_resolve(cr, reviewer1, author, releaser):
    root = discussion_actions.add_comment(cr, actor=reviewer1, body="Question.")
    reply = discussion_actions.add_comment(cr, actor=author, body="Answer.", parent=root)
    with pytest.raises(IllegalTransition, match=f"resolve or reopen its thread \\(comment {root.pk}\\)"):
        discussion_actions.resolve_comment(reply, actor=author)
    with pytest.raises(PermissionDenied, match="may not resolve or reopen"):
        discussion_actions.resolve_comment(root, actor=releaser)  # a member, but neither author, proposer nor reviewer


def test_allowed_actions_follow_the_checks(cr, reviewer1, author, auditor):
    comment = discussion_actions.add_comment(cr, actor=reviewer1, body="Question.")
    assert discussion_actions.allowed_discussion_actions(cr, reviewer1) == {"comment", "review_comment", "assign"}
    assert discussion_actions.allowed_discussion_actions(cr, author) == {"comment", "assign"}
    assert discussion_actions.allowed_comment_actions(comment, reviewer1) == {"reply", "edit", "resolve"}
    assert discussion_actions.allowed_comment_actions(comment, author) == {"reply", "resolve"}


# --- assignments --------------------------------------------------------------------------------------------


def test_assign_change_due_date_and_unassign_are_audited(cr, author, reviewer1, audit):
    due = timezone.now().date() + dt.timedelta(days=3)
    assignment = discussion_actions.assign_reviewer(cr, actor=author, reviewer=reviewer1, due_date=due.isoformat())
    assert (assignment.reviewer, assignment.due_date, assignment.assigned_by) == (reviewer1, due, author)
    later = due + dt.timedelta(days=2)
    again = discussion_actions.assign_reviewer(cr, actor=author, reviewer=reviewer1, due_date=later)
    assert again.pk == assignment.pk and again.due_date == later
    discussion_actions.unassign_reviewer(cr, actor=author, reviewer=reviewer1)
    assert audit.actions() == ["reviewer.assigned", "reviewer.due_date_changed", "reviewer.unassigned"]
    assert audit.events()[1].before["due_date"] == due.isoformat()
    assert list(discussion_actions.active_assignments(cr)) == []
    assert ReviewerAssignment.objects.get(pk=assignment.pk).removed_by == author  # the row stays for the record
    with pytest.raises(IllegalTransition, match="is not assigned"):
        discussion_actions.unassign_reviewer(cr, actor=author, reviewer=reviewer1)


def test_assignees_must_be_able_to_review_and_assigners_must_be_concerned(cr, users, author, reviewer1, releaser,
                                                                        outsider, audit):
    author2 = users["author2"]
    yesterday = timezone.now().date() - dt.timedelta(days=1)
    refusals = [({"reviewer": author2}, "reviewer", "reviewer role"),
                ({"reviewer": author}, "reviewer", "may not review change request"),
                ({"reviewer": outsider}, "reviewer", "not a member"),
                ({"reviewer": reviewer1, "due_date": yesterday}, "due_date", "in the past"),
                ({"reviewer": reviewer1, "due_date": "next friday"}, "due_date", "not a date")]
    for kwargs, field, words in refusals:
        with pytest.raises(InvalidInput, match=words) as refused:
            discussion_actions.assign_reviewer(cr, actor=author, **kwargs)
        assert refused.value.field == field
    with pytest.raises(PermissionDenied, match="may not assign reviewers"):
        discussion_actions.assign_reviewer(cr, actor=releaser, reviewer=reviewer1)
    assert audit.events() == [] and not ReviewerAssignment.objects.exists()
    assert reviewer1 in discussion_actions.eligible_reviewers(cr) and author not in discussion_actions.eligible_reviewers(cr)


# --- notifications ------------------------------------------------------------------------------------------


def kinds_for(user):
    return sorted(Notification.objects.filter(recipient=user).values_list("kind", flat=True))


def test_mention_and_reply_notifications_respect_settings_and_email(cr, emails, reviewer1, author, notify_inline,
                                                                   django_capture_on_commit_callbacks):
    author2 = emails["author2"]
    notification_actions.update_settings(author2, actor=author2, changes={"mentioned": {"in_app": False,
                                                                                        "email": False}})
    with django_capture_on_commit_callbacks(execute=True):
        comment = discussion_actions.add_comment(cr, actor=reviewer1, body="@author @author2 see the instruction",
                                                 anchor="instruction", predictor="classify")
    assert kinds_for(author) == ["mentioned"]  # mentioned, so not also told "commented"
    assert kinds_for(author2) == []  # chose neither channel for mentions
    assert kinds_for(reviewer1) == []  # never told about one's own comment
    note = Notification.objects.get(recipient=author)
    assert note.link.endswith(f"#comment-{comment.pk}") and "mentioned you on the instruction of classify" in note.text
    assert note.email_status == EmailStatus.SENT
    [message] = mail.outbox
    assert message.to == ["author@example.com"] and "mentioned you" in message.subject
    assert f"https://governance.example/change-requests/{cr.pk}/#comment-{comment.pk}" in message.body

    with django_capture_on_commit_callbacks(execute=True):
        discussion_actions.add_comment(cr, actor=author, body="Fixed in the next draft.", parent=comment)
    assert kinds_for(reviewer1) == ["commented"]  # a participant of the thread
    assert len(mail.outbox) == 1  # "commented" is not emailed by default


def test_workflow_signals_notify_the_people_concerned(program, make_version, emails, author, reviewer1, reviewer2,
                                                     reviewer3, releaser, notify_inline,
                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        cr = open_change_request(make_version(), actor=author, title="Sharper wording")
    for reviewer in (reviewer1, reviewer2, reviewer3):
        assert kinds_for(reviewer) == ["review_requested"]
    assert kinds_for(author) == [] and kinds_for(releaser) == []
    with django_capture_on_commit_callbacks(execute=True):
        discussion_actions.assign_reviewer(cr, actor=author, reviewer=reviewer1,
                                           due_date=timezone.now().date() + dt.timedelta(days=1))
    assert kinds_for(reviewer1) == ["review_requested", "review_requested"]
    with django_capture_on_commit_callbacks(execute=True):
        request_changes(cr, actor=reviewer2, reason="Name the labels.", content_hash=seen(cr))
    assert kinds_for(author) == ["changes_requested"]
    assert "requested changes to CR-" in Notification.objects.get(recipient=author).text
    assert {m.to[0] for m in mail.outbox} >= {"reviewer1@example.com", "author@example.com"}


def test_a_failed_run_tells_its_starter(program, author, emails, notify_inline, django_capture_on_commit_callbacks):
    import_dataset(program, actor=author, split="train", name="train", rows=load_rows("train")[:20])
    run = start_run(program, actor=author, enqueue=False)
    with django_capture_on_commit_callbacks(execute=True):
        finish_run(run, RunStatus.FAILED, error="the model endpoint answered 401")
    note = Notification.objects.get(recipient=author)
    assert note.kind == NotificationKind.RUN_FAILED and "answered 401" in note.text
    assert note.link == f"/runs/{run.pk}/"


def test_email_failure_never_breaks_the_action_and_is_retried(cr, emails, reviewer1, author, settings,
                                                              notify_inline, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2  # nothing listens
    with django_capture_on_commit_callbacks(execute=True):
        comment = discussion_actions.add_comment(cr, actor=reviewer1, body="@author a question")
    assert Comment.objects.filter(pk=comment.pk).exists()
    note = Notification.objects.get(recipient=author)
    assert note.email_status == EmailStatus.PENDING and note.email_attempts == 1
    assert "Error" in note.email_error and note.email_next_attempt_at > timezone.now()
    assert note.read_at is None and notification_actions.unread_count(author) == 1  # the portal still shows it


# --- settings and reading -----------------------------------------------------------------------------------


def test_settings_are_ones_own_audited_and_checked(author, reviewer1, audit):
    assert notification_actions.settings_of(author)["commented"] == {"in_app": True, "email": False}
    after = notification_actions.update_settings(author, actor=author, changes={"released": {"email": False}})
    assert after["released"] == {"in_app": True, "email": False}
    [event] = audit.events()
    assert event.action == "notification_settings.changed" and event.before == {"released": {"in_app": True,
                                                                                            "email": True}}
    with pytest.raises(PermissionDenied):
        notification_actions.update_settings(author, actor=reviewer1, changes={"released": {"email": True}})
    for changes, field in [({"sneezed": {"email": True}}, "settings"), ({"released": {"sms": True}}, "settings.released"),
                           ({"released": {"email": "yes"}}, "settings.released.email"), ({}, "settings")]:
        with pytest.raises(InvalidInput) as refused:
            notification_actions.update_settings(author, actor=author, changes=changes)
        assert refused.value.field == field
    assert len(audit.events()) == 1


def test_mark_read_only_ones_own(cr, reviewer1, author, reviewer2, django_capture_on_commit_callbacks, settings):
    settings.GOVERNANCE_NOTIFY_DISPATCH = "inline"
    with django_capture_on_commit_callbacks(execute=True):
        discussion_actions.add_comment(cr, actor=reviewer1, body="@author one")
        discussion_actions.add_comment(cr, actor=reviewer1, body="@author two")
    mine = list(notification_actions.inbox(author))
    assert notification_actions.unread_count(author) == 2
    with pytest.raises(NotFound):
        notification_actions.mark_read(reviewer2, [mine[0].pk])
    assert notification_actions.mark_read(author, [mine[0].pk]) == 1
    assert notification_actions.unread_count(author) == 1
    assert notification_actions.mark_read(author) == 1 and notification_actions.unread_count(author) == 0


def test_approval_and_release_tell_the_people_concerned(make_cr, approve, reviewer1, reviewer2, releaser, author,
                                                       notify_inline, django_capture_on_commit_callbacks):
    from governance.actions import release_version

    cr = make_cr()
    approve(cr, reviewer1)
    with django_capture_on_commit_callbacks(execute=True):
        approve(cr, reviewer2)
    assert kinds_for(author) == ["approved"] and kinds_for(releaser) == ["approved"]
    assert kinds_for(reviewer1) == []  # the approvers already know
    cr.version.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        release_version(cr.version, actor=releaser, reason="Ship it.")
    for person in (author, reviewer1, reviewer2):
        assert "released" in kinds_for(person)
    note = Notification.objects.get(recipient=reviewer1, kind=NotificationKind.RELEASED)
    assert note.text == f"Releaser Example released label \u201cproduction\u201d of support to v{cr.version.number}."
    assert note.link == "/programs/support/releases/"


def test_who_holds_a_role_is_the_permission_checks_answer_in_constant_queries(program, users, admin,
                                                                               django_assert_max_num_queries):
    from django.contrib.auth import get_user_model

    from governance.actions.memberships import add_member, set_program_roles
    from governance.notify import people_with_role
    from governance.permissions import has_role

    def fresh_answer(role):
        people = [get_user_model().objects.get(pk=u.pk) for u in users.values()]
        return sorted(u.username for u in people if u.is_active and has_role(u, role, program)
                      and (u.programs.filter(pk=program.pk).exists() or program.owner_id == u.pk))

    set_program_roles(program, users["reviewer3"], ["reviewer", "releaser"], actor=admin)
    add_member(program, actor=users["author"], user=users["auditor"])
    for role in ("releaser", "reviewer", "author", "auditor"):
        with django_assert_max_num_queries(3):  # the people, their role groups, their memberships
            held = sorted(u.username for u in people_with_role(program, role))
        assert held == fresh_answer(role), role
    assert sorted(u.username for u in people_with_role(program, "releaser")) == ["releaser", "reviewer3"]
