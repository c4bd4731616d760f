"""The review workflow: change requests, signed approvals, segregation of duties, re-authentication."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction

from governance import signals
from governance.actions import (
    allowed_review_actions,
    approve_change_request,
    create_review_policy,
    edit_version,
    open_change_request,
    reject_change_request,
    release_version,
    request_changes,
    resubmit_change_request,
    set_program_roles,
    update_program,
    withdraw_change_request,
)
from governance.audit import _checkpoint_after_commit
from governance.errors import (
    AuthenticationFailed,
    IllegalTransition,
    InvalidInput,
    PermissionDenied,
    SegregationOfDuties,
)
from governance.models import (
    AuditEvent,
    ChangeRequestStatus,
    Decision,
    OptimizationRun,
    ProgramMembership,
    Review,
    SignatureMeaning,
    VersionStatus,
)
from tests.governance.conftest import WINNING_INSTRUCTIONS, AuditLog, evaluate, payload_with, seen

pytestmark = pytest.mark.django_db


def domain_signals(callbacks):
    """On-commit callbacks other than the audit trail's own checkpoint check."""
    return [c for c in callbacks if c is not _checkpoint_after_commit]


def workflow(audit: AuditLog) -> list[str]:
    """The audited workflow steps, without the system evaluations' own events."""
    return [a for a in audit.actions() if not a.startswith("evaluation.") and a != "change_request.evaluated"]


# --- opening ------------------------------------------------------------------------------------------------


def test_open_change_request_moves_version_to_review(make_version, author, audit):
    version = make_version()
    audit.mark()
    cr = open_change_request(version, actor=author, title="Sharper instructions", ticket_ref="CHG-12",
                             impact="low")
    version.refresh_from_db()
    assert version.status == VersionStatus.IN_REVIEW
    assert (cr.status, cr.base_version, cr.opened_by, cr.ticket_ref) == (ChangeRequestStatus.OPEN, None, author,
                                                                         "CHG-12")
    assert audit.actions() == ["change_request.opened", "version.submitted", "evaluation.requested",
                               "evaluation.requested"]
    assert audit.events()[1].before["status"] == "draft" and audit.events()[1].after["status"] == "in_review"


def test_open_sets_base_version_to_production(make_approved, make_cr, releaser):
    production = make_approved()
    release_version(production, actor=releaser, reason="go live")
    assert make_cr().base_version == production


def test_open_refuses_bad_state_and_input(make_cr, make_version, author, users, audit):
    cr = make_cr()
    with pytest.raises(IllegalTransition, match=f"version 1 already has change request {cr.pk} \\(open\\)"):
        open_change_request(cr.version, actor=author, title="twice")
    version = make_version()
    with pytest.raises(InvalidInput, match="title is required"):
        open_change_request(version, actor=author, title="")
    with pytest.raises(InvalidInput, match="impact must be one of low, medium, high"):
        open_change_request(version, actor=author, title="t", impact="huge")
    with pytest.raises(PermissionDenied, match="user 'reviewer1' needs the author role to open change requests"):
        open_change_request(version, actor=users["reviewer1"], title="t")
    assert workflow(audit) == ["version.created", "change_request.opened", "version.submitted", "version.created"]


def test_change_request_opened_signal_fires_on_commit(make_version, author, django_capture_on_commit_callbacks):
    received = []
    signals.change_request_opened.connect(lambda sender, **kw: received.append(kw["instance"]), weak=False,
                                          dispatch_uid="t-opened")
    try:
        version = make_version()
        with django_capture_on_commit_callbacks(execute=True):
            cr = open_change_request(version, actor=author, title="signal")
        assert received == [cr]
    finally:
        signals.change_request_opened.disconnect(dispatch_uid="t-opened")


# --- approving ----------------------------------------------------------------------------------------------


def test_two_distinct_approvals_approve_and_freeze(make_cr, approve, reviewer1, reviewer2, audit,
                                                   django_capture_on_commit_callbacks):
    cr = make_cr()
    audit.mark()
    first = approve(cr, reviewer1, reason="looks right")
    cr.refresh_from_db()
    cr.version.refresh_from_db()
    assert cr.status == ChangeRequestStatus.OPEN and cr.version.status == VersionStatus.IN_REVIEW  # 1 of 2
    assert audit.actions() == ["review.approved"]
    assert (first.printed_name, first.meaning, first.decision) == ("Reviewer1 Example", SignatureMeaning.APPROVAL,
                                                                   Decision.APPROVE)
    assert first.content_hash == cr.version.content_hash and first.auth_method == "password"
    assert first.signed_at.utcoffset().total_seconds() == 0

    received = []
    signals.change_request_approved.connect(lambda sender, **kw: received.append(kw["instance"]), weak=False,
                                            dispatch_uid="t-approved")
    try:
        audit.mark()
        with django_capture_on_commit_callbacks(execute=True):
            approve(cr, reviewer2)
    finally:
        signals.change_request_approved.disconnect(dispatch_uid="t-approved")
    cr.refresh_from_db()
    cr.version.refresh_from_db()
    assert cr.status == ChangeRequestStatus.APPROVED and cr.closed_at is not None
    assert cr.version.status == VersionStatus.APPROVED and cr.version.approved_at is not None
    assert cr.version.is_frozen
    assert audit.actions() == ["review.approved", "version.approved", "change_request.approved"]
    approved_event = audit.events()[1]
    assert approved_event.before["status"] == "in_review" and approved_event.after["status"] == "approved"
    assert received == [cr]


def test_signature_records_request_ip(make_cr, approve, reviewer1, monkeypatch):
    monkeypatch.setattr("governance.actions.reviews.current_request_context",
                        lambda: {"ip": "203.0.113.9", "request_id": "r1"})
    assert approve(make_cr(), reviewer1).ip_address == "203.0.113.9"


def _give_reviewer_role(user, program) -> None:
    """The reviewer role on the program as well (roles are per program)."""
    held = ProgramMembership.objects.get(program=program, user=user).roles
    set_program_roles(program, user, [*held, "reviewer"], actor=None, reason="also reviews")


def test_author_cannot_approve_own_version(users, program, make_cr, approve, audit):
    author = users["author"]
    _give_reviewer_role(author, program)  # even with the reviewer role
    cr = make_cr()
    audit.mark()
    with pytest.raises(SegregationOfDuties, match="user 'author' is the author of version 1 and cannot review it"):
        approve(cr, author)
    assert audit.actions() == [] and not Review.objects.exists()
    assert "approve" not in allowed_review_actions(cr, author)


def test_opener_cannot_approve(users, program, make_version, approve, audit):
    author2 = users["author2"]
    _give_reviewer_role(author2, program)
    version = make_version()
    cr = open_change_request(version, actor=author2, title="proposed by author2")
    audit.mark()
    with pytest.raises(SegregationOfDuties, match=f"user 'author2' opened change request {cr.pk} and cannot "
                                                  "review it"):
        approve(cr, author2)
    assert audit.actions() == []


def test_run_starter_cannot_approve(program, users, make_cr, make_version, approve, audit):
    reviewer1 = users["reviewer1"]
    run = OptimizationRun.objects.create(program=program, started_by=reviewer1)  # runs' actions are elsewhere
    cr = make_cr(version=make_version(run=run, origin="optimizer"))
    audit.mark()
    with pytest.raises(SegregationOfDuties, match=f"user 'reviewer1' started optimization run {run.pk}, which "
                                                  "produced version 1, and cannot review it"):
        approve(cr, reviewer1)
    assert audit.actions() == []


def test_duplicate_approval_is_refused(make_cr, approve, reviewer1, audit):
    cr = make_cr()
    approve(cr, reviewer1)
    audit.mark()
    with pytest.raises(IllegalTransition, match="user 'reviewer1' has already approved this content of version 1"):
        approve(cr, reviewer1)
    assert audit.actions() == []
    assert Review.objects.filter(change_request=cr).count() == 1


def test_wrong_password_is_refused_and_audited(make_cr, reviewer1, audit):
    cr = make_cr()
    audit.mark()
    with pytest.raises(AuthenticationFailed, match="re-authentication failed for user 'reviewer1': wrong password"):
        approve_change_request(cr, actor=reviewer1, password="guess", content_hash=seen(cr))
    assert audit.actions() == ["signature.failed"]
    event = audit.events()[0]
    assert event.actor == reviewer1 and event.object_type == "ChangeRequest" and event.object_id == str(cr.pk)
    assert event.after == {"change_request": cr.pk, "version": 1, "attempted": "approve", "auth_method": "password"}
    assert not Review.objects.exists()


def test_failed_signature_event_is_committed(committed_db, make_cr, reviewer1):
    """No test transaction around it: the event must survive the refused action's rollback on its own."""
    cr = make_cr()
    assert not connection.in_atomic_block
    with pytest.raises(AuthenticationFailed):
        approve_change_request(cr, actor=reviewer1, password="", content_hash=seen(cr))
    assert list(AuditEvent.objects.filter(action="signature.failed").values_list("actor__username", flat=True)) \
        == ["reviewer1"]
    assert not Review.objects.exists()


def test_non_member_and_missing_role_cannot_review(make_cr, users, approve, audit):
    cr = make_cr()
    audit.mark()
    with pytest.raises(PermissionDenied, match="user 'outsider' is not a member of program support"):
        approve(cr, users["outsider"])
    with pytest.raises(PermissionDenied, match="user 'releaser' needs the reviewer role to review change requests"):
        approve(cr, users["releaser"])
    with pytest.raises(PermissionDenied, match="user 'auditor' needs the reviewer role"):
        reject_change_request(cr, actor=users["auditor"], reason="no", content_hash=seen(cr))
    assert audit.actions() == []  # refused before re-authentication: nothing was signed or attempted


def test_policy_reviewer_group_replaces_reviewer_role(program, users, make_cr, approve):
    group = Group.objects.create(name="compliance")
    policy = create_review_policy(actor=users["admin"], name="compliance-3", required_approvals=3,
                                  reviewer_group=group)
    update_program(program, actor=users["admin"], review_policy=policy)
    users["reviewer3"].groups.add(group)
    cr = make_cr()
    with pytest.raises(PermissionDenied, match="user 'reviewer1' is not in group 'compliance', which review "
                                               "policy 'compliance-3' requires of reviewers"):
        approve(cr, users["reviewer1"])
    approve(cr, users["reviewer3"])


def test_policy_required_approvals(program, users, make_cr, approve, reviewer1, reviewer2, reviewer3):
    policy = create_review_policy(actor=users["admin"], name="three", required_approvals=3)
    update_program(program, actor=users["author"], review_policy=policy)
    cr = make_cr()
    approve(cr, reviewer1)
    approve(cr, reviewer2)
    cr.version.refresh_from_db()
    assert cr.version.status == VersionStatus.IN_REVIEW  # 2 of 3
    approve(cr, reviewer3)
    cr.version.refresh_from_db()
    assert cr.version.status == VersionStatus.APPROVED


def test_score_gate_refuses_final_approval(program, make_approved, make_version, make_cr, approve, reviewer1,
                                           reviewer2, releaser, audit):
    production = make_approved(version=make_version(instructions=WINNING_INSTRUCTIONS))
    release_version(production, actor=releaser, reason="baseline")
    cr = make_cr()
    assert (cr.candidate_evaluation.score, cr.baseline_evaluation.score) == (0.0, 1.0)
    approve(cr, reviewer1)  # not the final approval: the gate is not asked yet
    audit.mark()
    with pytest.raises(IllegalTransition, match="version 2 scores 0.0000 on test, below the production score "
                                                "1.0000; the review policy requires test not below production"):
        approve(cr, reviewer2)
    assert audit.actions() == []
    cr.refresh_from_db()
    assert cr.status == ChangeRequestStatus.OPEN and cr.recommended is False
    assert Review.objects.filter(change_request=cr).count() == 1


def test_score_gate_can_be_off(program, users, make_approved, make_version, make_cr, approve, reviewer1, reviewer2,
                               releaser):
    production = make_approved(version=make_version(instructions=WINNING_INSTRUCTIONS))
    release_version(production, actor=releaser, reason="baseline")
    cr = make_cr()
    approve(cr, reviewer1)
    with pytest.raises(IllegalTransition, match="below the production score 1.0000"):
        approve(cr, reviewer2)
    lax = create_review_policy(actor=users["admin"], name="no-gate", require_test_not_below_production=False)
    update_program(program, actor=users["admin"], review_policy=lax)
    approve(cr, reviewer2)
    cr.refresh_from_db()
    assert cr.status == ChangeRequestStatus.APPROVED


def test_signature_meaning_must_match(make_cr, approve, reviewer1):
    with pytest.raises(InvalidInput, match="a approve signature must carry the meaning 'approval'"):
        approve(make_cr(), reviewer1, meaning=SignatureMeaning.REJECTION)


# --- rejecting, requesting changes, resubmitting, withdrawing -------------------------------------------


def test_reject_needs_reason_and_ends_both(make_cr, reviewer1, pw, audit, django_capture_on_commit_callbacks):
    cr = make_cr()
    audit.mark()
    with pytest.raises(InvalidInput, match="a reason is required to reject a change request") as info:
        reject_change_request(cr, actor=reviewer1, reason="  ", content_hash=seen(cr))
    assert info.value.field == "reason" and audit.actions() == []
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        review = reject_change_request(cr, actor=reviewer1, reason="wrong tone", password=pw(reviewer1),
                                       content_hash=seen(cr))
    assert len(domain_signals(callbacks)) == 1
    cr.refresh_from_db()
    cr.version.refresh_from_db()
    assert (cr.status, cr.version.status) == (ChangeRequestStatus.REJECTED, VersionStatus.REJECTED)
    assert (review.meaning, review.auth_method, review.reason) == (SignatureMeaning.REJECTION, "password",
                                                                   "wrong tone")
    assert audit.actions() == ["review.rejected", "change_request.rejected", "version.rejected"]
    with pytest.raises(IllegalTransition, match=f"change request {cr.pk} is rejected; only open change requests "
                                                "can be approved"):
        approve_change_request(cr, actor=reviewer1, password=pw(reviewer1), content_hash=seen(cr))


def test_approving_a_rejected_version_names_its_state(make_cr, reviewer1, reviewer2, approve):
    cr = make_cr()
    reject_change_request(cr, actor=reviewer1, reason="no", content_hash=seen(cr))
    with pytest.raises(IllegalTransition, match="is rejected; only open change requests can be approved"):
        approve(cr, reviewer2)


def test_request_changes_then_edit_voids_old_approvals(make_cr, approve, author, reviewer1, reviewer2, reviewer3,
                                                       audit):
    cr = make_cr()
    approval = approve(cr, reviewer1)
    audit.mark()
    with pytest.raises(InvalidInput, match="a reason is required to request changes"):
        request_changes(cr, actor=reviewer2, reason="", content_hash=seen(cr))
    request_changes(cr, actor=reviewer2, reason="mention refunds", content_hash=seen(cr))
    cr.refresh_from_db()
    cr.version.refresh_from_db()
    assert (cr.status, cr.version.status) == (ChangeRequestStatus.CHANGES_REQUESTED, VersionStatus.DRAFT)
    assert audit.actions() == ["review.changes_requested", "change_request.changes_requested",
                               "version.returned_to_draft"]
    with pytest.raises(IllegalTransition, match=f"change request {cr.pk} is changes_requested; only open change "
                                                "requests can be approved"):
        approve(cr, reviewer3)

    audit.mark()
    edit_version(cr.version, actor=author, payload=payload_with(cr.program, "Mention refunds explicitly."))
    approval.refresh_from_db()
    assert approval.voided is True
    assert audit.actions() == ["version.edited", "review.voided"]
    voided = audit.events()[1]
    assert voided.object_id == str(approval.pk) and voided.before["voided"] is False

    audit.mark()
    resubmit_change_request(cr, actor=author, reason="done")
    assert workflow(audit) == ["change_request.resubmitted", "version.submitted"]
    evaluate(cr)  # the new content is evaluated again before anyone may approve it
    approve(cr, reviewer1)  # the earlier signature was on other content: it counts no more, a new one is needed
    cr.version.refresh_from_db()
    assert cr.version.status == VersionStatus.IN_REVIEW
    approve(cr, reviewer2)
    cr.version.refresh_from_db()
    assert cr.version.status == VersionStatus.APPROVED
    assert Review.objects.filter(change_request=cr, decision="approve", voided=False).count() == 2


def test_resubmit_without_edit_keeps_approvals_on_same_content(make_cr, approve, author, reviewer1, reviewer2):
    cr = make_cr()
    approve(cr, reviewer1)
    request_changes(cr, actor=reviewer2, reason="please double check", content_hash=seen(cr))
    resubmit_change_request(cr, actor=author)
    approve(evaluate(cr), reviewer2)
    cr.version.refresh_from_db()
    assert cr.version.status == VersionStatus.APPROVED


def test_resubmit_and_withdraw_are_for_the_proposer(make_cr, users, author, reviewer1, audit):
    cr = make_cr()
    with pytest.raises(IllegalTransition, match=f"change request {cr.pk} is open; only changes_requested change "
                                                "requests can be resubmitted"):
        resubmit_change_request(cr, actor=author)
    with pytest.raises(PermissionDenied, match=f"only the author of version 1 or the opener of change request "
                                               f"{cr.pk} may withdraw it"):
        withdraw_change_request(cr, actor=users["author2"])
    audit.mark()
    withdraw_change_request(cr, actor=author, reason="not needed")
    cr.refresh_from_db()
    cr.version.refresh_from_db()
    assert (cr.status, cr.version.status) == (ChangeRequestStatus.WITHDRAWN, VersionStatus.DRAFT)
    assert audit.actions() == ["change_request.withdrawn", "version.returned_to_draft"]
    fresh = open_change_request(cr.version, actor=author, title="second try")  # the draft can be proposed again
    assert fresh.pk != cr.pk


def test_allowed_review_actions(make_cr, users, author, reviewer1, approve):
    cr = make_cr()
    assert allowed_review_actions(cr, reviewer1) == {"approve", "reject", "request_changes"}
    assert allowed_review_actions(cr, author) == {"withdraw"}
    assert allowed_review_actions(cr, users["outsider"]) == set()
    approve(cr, reviewer1)
    assert allowed_review_actions(cr, reviewer1) == {"reject", "request_changes"}
    request_changes(cr, actor=users["reviewer2"], reason="fix", content_hash=seen(cr))
    cr.refresh_from_db()
    assert allowed_review_actions(cr, author) == {"resubmit", "withdraw"}
    assert allowed_review_actions(cr, reviewer1) == set()


# --- the database's own guard -------------------------------------------------------------------------------


def test_db_constraint_refuses_review_by_version_author(make_cr, author):
    cr = make_cr()
    with pytest.raises(IntegrityError), transaction.atomic():
        Review.objects.create(change_request=cr, version=cr.version, reviewer=author, version_author=author,
                              decision="approve", meaning="approval", printed_name="Author Example",
                              content_hash=cr.version.content_hash)


def test_db_constraint_refuses_review_by_run_starter(program, make_cr, make_version, reviewer1):
    run = OptimizationRun.objects.create(program=program, started_by=reviewer1)
    cr = make_cr(version=make_version(run=run))
    with pytest.raises(IntegrityError), transaction.atomic():
        Review.objects.create(change_request=cr, version=cr.version, reviewer=reviewer1,
                              version_author=cr.version.created_by, run_starter=reviewer1, decision="approve",
                              meaning="approval", printed_name="R", content_hash=cr.version.content_hash)


def test_db_constraint_refuses_second_live_approval(make_cr, approve, reviewer1):
    cr = make_cr()
    approve(cr, reviewer1)
    log = AuditLog()
    with pytest.raises(IntegrityError), transaction.atomic():
        Review.objects.create(change_request=cr, version=cr.version, reviewer=reviewer1,
                              version_author=cr.version.created_by, decision="approve", meaning="approval",
                              printed_name="R", content_hash=cr.version.content_hash)
    assert log.actions() == []
