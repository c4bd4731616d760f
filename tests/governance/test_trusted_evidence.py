"""Trusted evidence: what reviewers sign rests on scores the system produced, on the content they saw.

One test per attack of the trusted-evidence issue that this layer answers: author-typed scores, approval
before (or without) the system's evaluation, a signature landing on content changed since it was read, and a
"recommended" flag on a gain chance explains.
"""

from __future__ import annotations

import pytest

from governance.actions import (
    approve_change_request,
    edit_version,
    reject_change_request,
    request_changes,
    resubmit_change_request,
)
from governance.actions.releases import plan_release, release_version
from governance.actions.reviews import reevaluate_change_request
from governance.errors import IllegalTransition, InvalidInput
from governance.models import AuditEvent, Evaluation, EvaluationStatus, Review
from tests.governance.api_support import V1, error
from tests.governance.conftest import WINNING_INSTRUCTIONS, AuditLog, evaluate, payload_with, seen

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db


# --- scores come only from the system -----------------------------------------------------------------------------


def test_scores_in_a_create_or_edit_request_are_refused_naming_the_field(api, program, make_version, author):
    created = api(author).post(f"{V1}/versions/", {"program": "support", "scores": {"test": 0.99}}, format="json")
    assert error(created)["status"] == 400 and error(created)["field"] == "scores"
    assert error(created)["detail"] == "scores: scores is set by the system's evaluations; a request cannot send it"
    version = make_version()
    edited = api(author).patch(f"{V1}/versions/{version.pk}/", {"scores": {"test": 1.0}, "note": "x"}, format="json")
    assert error(edited)["status"] == 400 and error(edited)["field"] == "scores"
    version.refresh_from_db()
    assert version.scores == {} and version.note == ""


def test_the_gate_uses_the_systems_evaluation_not_what_a_version_carries(make_cr, approve, reviewer1, reviewer2):
    cr = make_cr()
    candidate, production = cr.candidate_evaluation, cr.baseline_evaluation
    assert candidate.content_hash == cr.version.content_hash and candidate.status == EvaluationStatus.SUCCEEDED
    assert candidate.dataset == production.dataset == cr.eval_dataset == cr.program.datasets.get(split="test")
    assert candidate.results.count() == production.results.count() == candidate.examples == 8
    assert candidate.lm_config == {"api_base": cr.program.lm_config["api_base"], "model": cr.program.lm_config["model"],
                                   "temperature": 0.0, "max_tokens": 256}
    assert candidate.calls + candidate.cached_calls == 8  # one per test row (a cached answer costs nothing)
    assert candidate.prompt_tokens > 0 or candidate.calls == 0
    approve(cr, reviewer1)
    approve(cr, reviewer2)


# --- no approval before the evidence is in --------------------------------------------------------------------------


def test_approval_waits_for_the_evaluation_and_names_which(make_cr, approve, reviewer1, audit):
    cr = make_cr(evaluated=False)
    audit.mark()
    with pytest.raises(IllegalTransition, match=r"^the evaluation of the candidate \(evaluation \d+\) is queued "
                                                r"\(0 of 8 examples\); approve once it has finished$"):
        approve(cr, reviewer1)
    assert audit.actions() == [] and not Review.objects.exists()
    evaluate(cr)
    assert approve(cr, reviewer1).decision == "approve"


def test_a_failed_evaluation_blocks_approval_until_evaluated_again(make_cr, make_version, approve, program,
                                                                  reviewer1, author):
    working = dict(program.lm_config)
    program.lm_config = {**working, "api_base": "http://127.0.0.1:9/v1", "num_retries": 0}  # nothing listens there
    program.save(update_fields=["lm_config"])  # test set-up of a broken endpoint, not a governed change
    cr = make_cr(version=make_version(instructions="A candidate evaluated against a dead endpoint."))
    assert cr.candidate_evaluation.status == EvaluationStatus.FAILED
    assert "cannot reach model" in cr.candidate_evaluation.error and not cr.candidate_evaluation.results.exists()
    with pytest.raises(IllegalTransition, match=r"the evaluation of the candidate \(evaluation \d+\) failed: "):
        approve(cr, reviewer1)

    program.lm_config = working
    program.save(update_fields=["lm_config"])
    with pytest.raises(IllegalTransition, match="has no failed or missing evaluation"):
        reevaluate_change_request(evaluate(reevaluate_change_request(cr, actor=author)), actor=author)
    cr.refresh_from_db()
    assert cr.candidate_evaluation.status == EvaluationStatus.SUCCEEDED
    assert AuditEvent.objects.filter(action="change_request.reevaluated", object_id=str(cr.pk)).count() == 1
    assert approve(cr, reviewer1).decision == "approve"


def test_an_approval_against_a_production_that_moved_is_refused_until_evaluated_again(
        make_cr, make_version, approve, reviewer1, reviewer2, releaser, author):
    first = make_cr(version=make_version(instructions="A change judged against the spec."))
    early = approve(first, reviewer1)
    second = make_cr(version=make_version(instructions=WINNING_INSTRUCTIONS))
    approve(second, reviewer1)
    approve(second, reviewer2)
    release_version(second.version, actor=releaser, reason="the better one ships first")
    first.refresh_from_db()
    with pytest.raises(IllegalTransition, match=rf"^production is version {second.version.number} now, but change "
                                                rf"request {first.pk} was evaluated against the program's spec; ask "
                                                r"the system to evaluate it again \(evaluate\) before approving$"):
        approve(first, reviewer2)
    first = evaluate(reevaluate_change_request(first, actor=author))
    assert first.base_version == second.version
    assert first.baseline_evaluation.content_hash == second.version.content_hash
    early.refresh_from_db()
    assert early.voided, "an approval given on the old comparison no longer counts"
    assert AuditEvent.objects.filter(action="review.voided", object_id=str(early.pk)).exists()
    with pytest.raises(IllegalTransition, match="has no failed or missing evaluation to run again, and production "
                                                "has not changed"):
        reevaluate_change_request(first, actor=author)


def test_releasing_a_version_approved_against_an_older_production_warns_and_records_it(make_approved, releaser):
    first, second = make_approved(), make_approved()  # both approved against the program's spec
    release_version(second, actor=releaser, reason="second first")
    move = plan_release(first, actor=releaser)
    assert move.warnings == (f"version {first.number} was approved against the program's spec, but production "
                             f"holds version {second.number} now: no system evaluation compared the two (a new "
                             "change request for this content would)",)
    release = release_version(first, actor=releaser, reason="rolling forward knowingly")
    event = AuditEvent.objects.get(action="release.created", object_id=str(release.pk))
    assert event.after["warnings"] == list(move.warnings)


def test_evaluations_are_reused_by_content_data_and_model(make_cr, make_version):
    first = make_cr()
    second = make_cr()
    assert second.baseline_evaluation == first.baseline_evaluation  # production (the spec) is evaluated once
    assert second.candidate_evaluation != first.candidate_evaluation
    assert Evaluation.objects.count() == 3


# --- a signature binds to the content its signer saw -------------------------------------------------------------


def test_an_approval_of_content_that_changed_since_it_was_read_is_refused(make_cr, approve, author, reviewer1,
                                                                          reviewer2, pw):
    cr = make_cr()
    shown = seen(cr)  # reviewer1 reads the change request: content hash A
    request_changes(cr, actor=reviewer2, reason="tighten it", content_hash=shown)
    edit_version(cr.version, actor=author, payload=payload_with(cr.program, "Classify tickets; be terse."))
    resubmit_change_request(cr, actor=author)
    evaluate(cr)
    assert seen(cr) != shown
    log = AuditLog()
    with pytest.raises(IllegalTransition, match=f"^version 1 changed since you reviewed it: you saw content "
                                                f"{shown[:12]}, it is now {seen(cr)[:12]}; reload the change "
                                                "request and review the current content$"):
        approve_change_request(cr, actor=reviewer1, password=pw(reviewer1), content_hash=shown)
    with pytest.raises(IllegalTransition, match="changed since you reviewed it"):
        reject_change_request(cr, actor=reviewer1, reason="no", content_hash=shown)
    assert log.actions() == [] and not Review.objects.filter(reviewer=reviewer1).exists()
    assert approve(cr, reviewer1).content_hash == seen(cr)


def test_a_decision_without_the_content_hash_is_refused(make_cr, reviewer1, pw):
    cr = make_cr()
    with pytest.raises(InvalidInput, match="^content_hash is required to approve") as info:
        approve_change_request(cr, actor=reviewer1, password=pw(reviewer1), content_hash="")
    assert info.value.field == "content_hash"


def test_the_api_refuses_a_stale_hash_with_409_and_writes_nothing(api, make_cr, reviewer1, reviewer2, author, pw):
    cr = make_cr()
    shown = api(reviewer1).get(f"{V1}/change-requests/{cr.pk}/").json()["content_hash"]
    request_changes(cr, actor=reviewer2, reason="tighten it", content_hash=shown)
    edit_version(cr.version, actor=author, payload=payload_with(cr.program, "Classify tickets; be terse."))
    resubmit_change_request(cr, actor=author)
    evaluate(cr)
    events = AuditEvent.objects.count()
    stale = api(reviewer1).post(f"{V1}/change-requests/{cr.pk}/approve/",
                                {"password": pw(reviewer1), "content_hash": shown}, format="json")
    assert error(stale)["status"] == 409 and "changed since you reviewed it" in error(stale)["detail"]
    assert AuditEvent.objects.count() == events and not Review.objects.filter(reviewer=reviewer1).exists()


def test_the_portal_form_carries_the_hash_the_page_showed(client, make_cr, author, reviewer1, reviewer2, pw):
    cr = make_cr()
    assert client.login(username="reviewer1", password=pw(reviewer1))
    page = client.get(f"/change-requests/{cr.pk}/").content.decode()
    shown = seen(cr)
    assert f'name="approve-content_hash" value="{shown}"' in page
    request_changes(cr, actor=reviewer2, reason="tighten it", content_hash=shown)
    edit_version(cr.version, actor=author, payload=payload_with(cr.program, "Classify tickets; be terse."))
    resubmit_change_request(cr, actor=author)
    evaluate(cr)
    response = client.post(f"/change-requests/{cr.pk}/approve/", {
        "approve-content_hash": shown, "approve-password": pw(reviewer1), "approve-confirm_meaning": "on"})
    assert response.status_code == 409 and b"changed since you reviewed it" in response.content
    assert not Review.objects.filter(reviewer=reviewer1).exists()


# --- "recommended" means more than chance -----------------------------------------------------------------------


def test_a_tie_is_not_recommended(make_cr):
    cr = make_cr()  # other words, same behaviour: the simulated model gets the same rows wrong
    assert cr.candidate_evaluation.score == cr.baseline_evaluation.score
    assert cr.recommended is False and cr.comparison["p_value"] == 1.0
    event = AuditEvent.objects.get(action="change_request.evaluated", object_id=str(cr.pk))
    assert event.reason.startswith("Not recommended: +0.0 points on 8 test examples is not a gain beyond chance")


def test_a_real_improvement_is_recommended_with_its_p_value(make_cr, make_version):
    cr = make_cr(version=make_version(instructions=WINNING_INSTRUCTIONS))
    assert (cr.candidate_evaluation.score, cr.baseline_evaluation.score) == (1.0, 0.0)
    assert cr.recommended is True
    assert cr.comparison["wins"] == 8 and cr.comparison["p_value"] == pytest.approx(2 ** -8)
    assert cr.comparison["method"] == "exact McNemar (one-sided)"


def test_candidate_checks_are_recorded_on_the_change_request(make_cr, make_version, client, reviewer1, pw):
    cr = make_cr(version=make_version(instructions="Sort the ticket (val score 0.83) into the"))
    assert {finding["code"] for finding in cr.checks} == {"truncated_instruction", "score_text", "labels_dropped"}
    assert client.login(username="reviewer1", password=pw(reviewer1))
    page = client.get(f"/change-requests/{cr.pk}/").content.decode()
    assert "the instruction looks cut off" in page and "score-like text" in page


def test_an_evaluation_whose_job_was_lost_is_sent_again_by_the_recovery_job(make_cr, monkeypatch):
    from governance import evaluator, schedules

    cr = make_cr(evaluated=False)
    sent: list[int] = []
    monkeypatch.setattr(evaluator, "dispatch_evaluation", sent.append)
    schedules.recover_stale_runs(queued_after=600)
    assert sent == [], "a freshly queued evaluation is left alone"
    Evaluation.objects.update(created_at=cr.created_at.replace(year=2020))  # set-up: an old, forgotten job
    schedules.recover_stale_runs(queued_after=600)
    assert sorted(sent) == sorted([cr.candidate_evaluation_id, cr.baseline_evaluation_id])


def test_a_reviewer_whose_password_an_admin_reset_cannot_sign_until_they_change_it(make_cr, approve, reviewer1,
                                                                                   admin, users):
    from governance.actions.accounts import change_own_password, reset_password
    from governance.errors import PermissionDenied

    cr = make_cr()
    reset_password(reviewer1, actor=admin, password="Admin-Chosen-Pass-7", reason="locked out")
    reviewer1.refresh_from_db()
    with pytest.raises(PermissionDenied, match="must change the password an administrator set before signing"):
        approve_change_request(cr, actor=reviewer1, password="Admin-Chosen-Pass-7", content_hash=seen(cr))
    assert not Review.objects.exists()
    change_own_password(reviewer1, old_password="Admin-Chosen-Pass-7", new_password="Only-I-Know-This-9")
    reviewer1.refresh_from_db()
    review = approve_change_request(cr, actor=reviewer1, password="Only-I-Know-This-9", content_hash=seen(cr))
    assert review.decision == "approve"


def test_wrong_signing_passwords_lock_the_signer_out_like_failed_logins(make_cr, reviewer1, pw, settings):
    from governance.errors import AuthenticationFailed

    settings.GOVERNANCE_LOGIN_MAX_FAILURES = 3
    cr = make_cr()
    for _ in range(3):
        with pytest.raises(AuthenticationFailed, match="wrong password"):
            approve_change_request(cr, actor=reviewer1, password="guess", content_hash=seen(cr))
    with pytest.raises(AuthenticationFailed, match="is locked out after repeated wrong passwords"):
        approve_change_request(cr, actor=reviewer1, password=pw(reviewer1), content_hash=seen(cr))
    assert AuditEvent.objects.filter(action="signature.failed", actor=reviewer1).count() == 3
    assert not Review.objects.exists()


# --- the evidence itself cannot be rewritten --------------------------------------------------------------------


def test_a_finished_evaluation_and_its_results_refuse_raw_rewrites(make_cr):
    from django.db import DatabaseError, connection, transaction

    cr = make_cr()
    evaluation = cr.candidate_evaluation
    attacks = [
        f"UPDATE governance_evaluation SET score = 1.0 WHERE id = {evaluation.pk}",
        f"DELETE FROM governance_evaluation WHERE id = {evaluation.pk}",
        f"UPDATE governance_evaluationresult SET score = 1.0 WHERE evaluation_id = {evaluation.pk}",
        f"DELETE FROM governance_evaluationresult WHERE evaluation_id = {evaluation.pk}",
    ]
    if connection.vendor == "sqlite":
        attacks.append(f"INSERT OR REPLACE INTO governance_evaluation SELECT * FROM governance_evaluation "
                       f"WHERE id = {evaluation.pk}")
    for statement in attacks:
        with pytest.raises(DatabaseError, match="evaluation|append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement)
    evaluation.refresh_from_db()
    assert evaluation.score == 0.0 and evaluation.results.count() == 8
