"""Change requests and reviews: the signed decisions that move a version to approved (frozen) or back.

A review is an electronic signature: printed name, UTC time, meaning, the content hash it is bound to, the
authentication method and the client IP. Approving re-authenticates with the password, and a failed attempt
is recorded durably. A version is approved when the policy's number of distinct reviewers have approved its
current content; the author, the run starter and the change request's opener never count.

Lock order everywhere: change request, then version. Approvals lock the change request first, so concurrent
reviewers are serialized: each sees the approvals committed before it, and exactly one makes the transition.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from governance.actions._common import (
    PRODUCTION_LABEL,
    create,
    Checks,
    allowed,
    expect_status,
    expect_transition,
    lock,
    require_reason,
    require_text,
    save,
    send_on_commit,
    transition,
    user_ref,
)
from governance.actions.accounts import check_can_sign
from governance.actions.approvals import has_live_approval
from governance.actions.credentials import login_lockout_remaining, record_login_failure
from governance.actions.datasets import active_datasets, examples_for
from governance.actions.evaluations import aligned_scores, request_evaluation
from governance.actions.versions import (
    ACTIVE_CR_STATUSES,
    active_change_request,
    close_change_request,
    cr_state,
    initial_payload,
    version_state,
    void_approvals,
    void_stale_approvals,
)
from governance.audit import printed_name, record_event
from governance.errors import (
    AuthenticationFailed,
    IllegalTransition,
    InvalidInput,
    PermissionDenied,
    SegregationOfDuties,
)
from governance.models import (
    ChangeRequest,
    ChangeRequestStatus,
    Decision,
    Evaluation,
    EvaluationStatus,
    ImpactClass,
    Program,
    PromptVersion,
    ReleaseLabel,
    Review,
    Role,
    SignatureMeaning,
    Split,
    VersionStatus,
)
from governance.permissions import in_group, require_member, require_role
from governance.request_context import current_request_context
from governance.signals import (
    change_request_approved,
    change_request_changes_requested,
    change_request_opened,
    change_request_rejected,
)
from optimizer import ProgramSpec, check_candidate, compare_paired

# What each decision does: how refusals word it, and the change request's and the version's next states.
DECISION_MOVES = {
    Decision.APPROVE: ("be approved", ChangeRequestStatus.APPROVED, VersionStatus.APPROVED),
    Decision.REJECT: ("be rejected", ChangeRequestStatus.REJECTED, VersionStatus.REJECTED),
    Decision.REQUEST_CHANGES: ("have changes requested", ChangeRequestStatus.CHANGES_REQUESTED, VersionStatus.DRAFT),
}
# The signature meaning each decision carries; a signature's meaning must match what it does.
MEANINGS = {Decision.APPROVE: SignatureMeaning.APPROVAL, Decision.REJECT: SignatureMeaning.REJECTION,
            Decision.REQUEST_CHANGES: SignatureMeaning.REVIEW}


# --- reading ------------------------------------------------------------------------------------------------


def required_approvals(program: Program) -> int:
    """The policy's number of distinct approvals, or the site default when the program has no policy."""
    if program.review_policy_id:
        return program.review_policy.required_approvals
    return settings.GOVERNANCE_DEFAULT_REQUIRED_APPROVALS


def live_approvals(cr: ChangeRequest, content_hash: str) -> QuerySet[Review]:
    """Approvals on this change request that are bound to `content_hash` and were not voided."""
    return cr.reviews.filter(decision=Decision.APPROVE, voided=False, content_hash=content_hash)


SERVING_ATTR = "serving_version_id"  # with_serving_version's annotation


def production_version(program: Program) -> PromptVersion | None:
    label = ReleaseLabel.objects.filter(program=program, name=PRODUCTION_LABEL).select_related("version").first()
    return label.version if label else None


def review_state(review: Review) -> dict[str, Any]:
    """The signature manifestation, as the audit trail and exports show it."""
    return {"change_request": review.change_request_id, "version": review.version.number,
            "reviewer": user_ref(review.reviewer), "printed_name": review.printed_name,
            "decision": review.decision, "meaning": review.meaning,
            "meaning_text": SignatureMeaning(review.meaning).label, "content_hash": review.content_hash,
            "signed_at": review.signed_at.isoformat(), "auth_method": review.auth_method,
            "ip_address": review.ip_address, "voided": review.voided, **_provider_state(review)}


def _provider_state(review: Review) -> dict[str, Any]:
    """A signature made through the identity provider names who the provider says signed, and when."""
    if review.auth_method != "oidc":
        return {}
    return {"auth_issuer": review.auth_issuer, "auth_subject": review.auth_subject,
            "auth_time": review.auth_time.isoformat() if review.auth_time else None}


# --- checks (raise; allowed_review_actions asks the same functions) --------------------------------------


def _username(user: Any) -> str:
    return repr(user.get_username())


def check_reviewer(program: Program, actor: Any) -> None:
    """The reviewer role (or the policy's reviewer group, which replaces it) and membership of the program."""
    check_can_sign(actor)  # an inactive account, a service account, or a password someone else set never signs
    policy = program.review_policy
    if policy is not None and policy.reviewer_group_id:
        if not in_group(actor, policy.reviewer_group_id):
            raise PermissionDenied(f"user {_username(actor)} is not in group {policy.reviewer_group.name!r}, "
                                   f"which review policy {policy.name!r} requires of reviewers")
        require_member(actor, program)
    else:
        require_role(actor, Role.REVIEWER, program, doing="review change requests")


def check_segregation(cr: ChangeRequest, version: PromptVersion, actor: Any) -> None:
    """Nobody reviews a change they made or proposed (admins included)."""
    if actor.pk == version.created_by_id:
        raise SegregationOfDuties(f"user {_username(actor)} is the author of version {version.number} "
                                  "and cannot review it")
    if version.run_id and actor.pk == version.run.started_by_id:
        raise SegregationOfDuties(f"user {_username(actor)} started optimization run {version.run_id}, which "
                                  f"produced version {version.number}, and cannot review it")
    if actor.pk == cr.opened_by_id:
        raise SegregationOfDuties(f"user {_username(actor)} opened change request {cr.pk} and cannot review it")


def check_decidable(cr: ChangeRequest, version: PromptVersion, actor: Any, decision: str) -> None:
    """State, segregation of duties and (for approvals) one live approval per reviewer and content."""
    doing, cr_to, version_to = DECISION_MOVES[decision]
    expect_transition(cr, cr_to, doing=doing)
    expect_transition(version, version_to, doing=doing)
    check_segregation(cr, version, actor)
    if decision != Decision.APPROVE:
        return
    if has_live_approval(cr, actor, version.content_hash):
        raise IllegalTransition(f"user {_username(actor)} has already approved this content of version "
                                f"{version.number} (hash {version.content_hash[:12]})")
    check_evidence(cr)


def check_proposer(cr: ChangeRequest, actor: Any, *, doing: str) -> None:
    """Resubmitting and withdrawing belong to the people who proposed the change."""
    if actor.pk not in (cr.opened_by_id, cr.version.created_by_id):
        raise PermissionDenied(f"only the author of version {cr.version.number} or the opener of change request "
                               f"{cr.pk} may {doing}")
    require_role(actor, Role.AUTHOR, cr.program, doing=doing)


def gate_scores(cr: ChangeRequest) -> tuple[float | None, float | None]:
    """(candidate, production) test scores, from the system's evaluations only (None while not succeeded)."""
    def score(evaluation: Evaluation | None) -> float | None:
        return evaluation.score if evaluation is not None and evaluation.status == EvaluationStatus.SUCCEEDED else None
    return score(cr.candidate_evaluation), score(cr.baseline_evaluation)


def production_moved(cr: ChangeRequest) -> bool:
    """Whether production serves another version than the one the change request is judged against: from the
    row's annotation on list pages (with_serving_version), else one query (an action under its locks asks)."""
    if hasattr(cr, SERVING_ATTR):
        serving = getattr(cr, SERVING_ATTR)
    else:
        production = production_version(cr.program)
        serving = production.pk if production is not None else None
    return serving != cr.base_version_id


def with_serving_version(queryset: QuerySet[ChangeRequest]) -> QuerySet[ChangeRequest]:
    """Change requests carrying the id of the version production serves now, read in the list's own query."""
    label = ReleaseLabel.objects.filter(program=OuterRef("program"), name=PRODUCTION_LABEL).values("version_id")
    return queryset.annotate(**{SERVING_ATTR: Subquery(label[:1])})


def _described(version: PromptVersion | None) -> str:
    return f"version {version.number}" if version is not None else "nothing released"


def check_current_base(cr: ChangeRequest) -> None:
    """The evidence compares the candidate with what production serves now: a release since it was gathered
    makes it stale (a version approved against an older production could ship below the current one)."""
    if not production_moved(cr):
        return
    was = f"version {cr.base_version.number}" if cr.base_version_id else "the program's spec"
    now = _described(production_version(cr.program))
    raise IllegalTransition(f"production is {now} now, but change request {cr.pk} was evaluated against {was}; "
                            "ask the system to evaluate it again (evaluate) before approving")


def check_evidence(cr: ChangeRequest) -> None:
    """Nobody signs an approval before the system has evaluated both versions on the same rows, against the
    version production serves now."""
    check_current_base(cr)
    for role, evaluation in (("the candidate", cr.candidate_evaluation), ("production", cr.baseline_evaluation)):
        if evaluation is None:
            raise IllegalTransition(f"change request {cr.pk} has no evaluation of {role}; ask for one "
                                    "(evaluate) before approving")
        if evaluation.status in (EvaluationStatus.QUEUED, EvaluationStatus.RUNNING):
            raise IllegalTransition(f"the evaluation of {role} (evaluation {evaluation.pk}) is {evaluation.status} "
                                    f"({evaluation.examples_done} of {evaluation.examples} examples); approve once "
                                    "it has finished")
        if evaluation.status != EvaluationStatus.SUCCEEDED:
            raise IllegalTransition(f"the evaluation of {role} (evaluation {evaluation.pk}) {evaluation.status}"
                                    f"{': ' + evaluation.error[:200] if evaluation.error else ''}; evaluate again "
                                    "before approving")


def check_score_gate(cr: ChangeRequest) -> None:
    """The policy's gate: a version whose test score is below production's cannot be approved."""
    policy = cr.program.review_policy
    if policy is not None and not policy.require_test_not_below_production:
        return
    candidate, production = gate_scores(cr)
    if candidate is None or production is None:
        raise IllegalTransition(f"change request {cr.pk} has no test scores from the system yet; the review "
                                "policy's score gate needs both")
    if candidate < production:
        raise IllegalTransition(
            f"version {cr.version.number} scores {candidate:.4f} on test, below the production score "
            f"{production:.4f}; the review policy requires test not below production, so the final approval "
            "is refused (reject the change or request changes)")


def check_seen(version: PromptVersion, content_hash: str | None, *, doing: str) -> None:
    """A signature binds to what the signer saw: refuse when the content changed since (or nothing was named)."""
    seen = (content_hash or "").strip().lower()
    if not seen:
        raise InvalidInput(f"content_hash is required to {doing}: the hash of the version content you reviewed",
                           field="content_hash")
    if seen != version.content_hash:
        raise IllegalTransition(f"version {version.number} changed since you reviewed it: you saw content "
                                f"{seen[:12]}, it is now {version.content_hash[:12]}; reload the change request "
                                "and review the current content")


def reauthenticate(cr: ChangeRequest, actor: Any, password: str | None, *, doing: str) -> None:
    """Check the signer's password; a failure is recorded as "signature.failed" and then raised.

    Wrong signing passwords count towards the same lockout as failed logins (a locked-out user is refused before
    the password is checked), so signing is no way to guess a password. The failure event is written in its own
    atomic block before the error propagates, so it is committed (or, under a caller's outer transaction, kept in
    it) rather than rolled back with the refused action. Callers must therefore not run this inside an atomic
    block they later roll back.
    """
    if not actor.has_usable_password():  # an SSO user: decide_through_provider is their way to sign
        raise AuthenticationFailed(f"user {_username(actor)} signs through the identity provider, not with a "
                                   "password: sign in the portal", field="password")
    remaining = login_lockout_remaining(actor.get_username())
    if remaining:
        raise AuthenticationFailed(f"user {_username(actor)} is locked out after repeated wrong passwords: try again "
                                   f"in {remaining} seconds", field="password")
    if password and actor.check_password(password):
        return
    with transaction.atomic():
        record_event("signature.failed", actor=actor, obj=cr, program=cr.program, reason="wrong password",
                     after={"change_request": cr.pk, "version": cr.version.number, "attempted": doing,
                            "auth_method": "password"})
    record_login_failure(actor.get_username())
    raise AuthenticationFailed(f"re-authentication failed for user {_username(actor)}: wrong password "
                               "(the attempt was recorded)")


# --- writing helpers ----------------------------------------------------------------------------------------


def check_meaning(decision: str, meaning: str) -> None:
    if meaning != MEANINGS[decision]:
        raise InvalidInput(f"a {decision} signature must carry the meaning {MEANINGS[decision].value!r}",
                           field="meaning")


def _sign(cr: ChangeRequest, version: PromptVersion, actor: Any, *, decision: str, reason: str,
          meaning: str, auth: dict[str, Any]) -> Review:
    review = create(
        Review, by=actor, change_request=cr, version=version, reviewer=actor,
        version_author_id=version.created_by_id, run_starter_id=version.run.started_by_id if version.run_id else None,
        decision=decision, reason=reason, meaning=meaning, printed_name=printed_name(actor),
        content_hash=version.content_hash, ip_address=current_request_context()["ip"], **auth)
    action = {Decision.APPROVE: "review.approved", Decision.REJECT: "review.rejected",
              Decision.REQUEST_CHANGES: "review.changes_requested"}[decision]
    record_event(action, actor=actor, obj=review, program=cr.program, after=review_state(review), reason=reason)
    return review


def _set_version_status(version: PromptVersion, status: str, *, actor: Any, action: str, reason: str = "",
                        **extra: Any) -> None:
    transition(version, status, actor=actor, action=action, state=version_state, reason=reason, **extra)


def _locked(cr: ChangeRequest) -> tuple[ChangeRequest, PromptVersion]:
    cr = lock(cr)
    return cr, lock(cr.version)


# --- evidence: system evaluations, the paired comparison and candidate checks -------------------------------


def evaluation_dataset(program: Program) -> Any:
    """The test dataset a change is judged on (the program's latest), or 409 when there is none."""
    dataset = active_datasets(program).get(Split.TEST)
    if dataset is None:
        raise IllegalTransition(f"program {program.slug} has no test dataset; import one so the system can evaluate "
                                "the change against production before anyone reviews it")
    return dataset


def baseline_payload(program: Program, base: PromptVersion | None) -> dict[str, Any]:
    """What a change is compared with: production's content, or the program's spec when nothing is released."""
    return base.payload if base is not None else initial_payload(program)


def _attach_evidence(cr: ChangeRequest, version: PromptVersion, *, actor: Any) -> None:
    """Ask the system to evaluate the candidate and the baseline on the same test rows, run the candidate
    checks, and record the comparison at once when both evaluations already exist (reused by key)."""
    dataset = evaluation_dataset(cr.program)
    cr.eval_dataset = dataset
    cr.candidate_evaluation = request_evaluation(cr.program, version.payload, dataset, actor=actor)
    cr.baseline_evaluation = request_evaluation(cr.program, baseline_payload(cr.program, cr.base_version), dataset,
                                                actor=actor)
    cr.checks = candidate_checks(cr.program, version, cr.base_version)
    cr.comparison, cr.recommended = {}, False
    save(cr, actor=actor, fields=["eval_dataset", "candidate_evaluation", "baseline_evaluation", "checks",
                                  "comparison", "recommended"])
    _compare_if_ready(cr)


def candidate_checks(program: Program, version: PromptVersion, base: PromptVersion | None) -> list[dict[str, str]]:
    """Findings on the candidate's content, judged against the baseline and the program's labeled data."""
    records = [row for dataset in active_datasets(program).values() for row in examples_for(dataset)]
    baseline = ProgramSpec.from_dict(baseline_payload(program, base)["program"])
    candidate = ProgramSpec.from_dict(version.payload["program"])
    return [finding.to_dict() for finding in check_candidate(candidate, baseline, records)]


def record_comparisons(evaluation: Evaluation) -> int:
    """After an evaluation finished: record the comparison of every active change request waiting on it."""
    waiting = ChangeRequest.objects.filter(status__in=ACTIVE_CR_STATUSES, comparison={}) \
        .filter(Q(candidate_evaluation=evaluation) | Q(baseline_evaluation=evaluation)).values_list("pk", flat=True)
    return sum(1 for pk in waiting if _record_comparison(pk))


@transaction.atomic
def _record_comparison(cr_pk: int) -> bool:
    cr = ChangeRequest.objects.select_for_update(no_key=True).get(pk=cr_pk)
    return _compare_if_ready(cr)


def _compare_if_ready(cr: ChangeRequest) -> bool:
    """Both evaluations succeeded and no comparison yet: compute it, set `recommended`, audit it."""
    candidate, baseline = cr.candidate_evaluation, cr.baseline_evaluation
    ready = all(e is not None and e.status == EvaluationStatus.SUCCEEDED for e in (candidate, baseline))
    if not ready or cr.comparison:
        return False
    before = cr_state(cr)
    paired = compare_paired(*aligned_scores(candidate, baseline))
    cr.comparison = {**paired.to_dict(), "candidate_evaluation": candidate.pk, "baseline_evaluation": baseline.pk,
                     "dataset_hash": candidate.dataset_hash}
    cr.recommended = paired.significant_gain
    save(cr, actor=None, fields=["comparison", "recommended"])
    record_event("change_request.evaluated", actor=None, obj=cr, program=cr.program, before=before,
                 after={**cr_state(cr), "comparison": cr.comparison},
                 reason=recommendation_text(cr.comparison))
    return True


def recommendation_text(comparison: dict[str, Any]) -> str:
    """One sentence a reviewer reads: the gain, its chance level, and whether that makes a recommendation."""
    if not comparison:
        return "not compared yet: the system's evaluations are not finished"
    gain = f"{comparison['delta'] * 100:+.1f} points on {comparison['examples']} test examples"
    odds = f"p = {comparison['p_value']:.3g}, {comparison['method']}"
    if comparison["significant_gain"]:
        return f"Recommended: {gain} ({odds})"
    return f"Not recommended: {gain} is not a gain beyond chance ({odds}, needs p < {comparison['alpha']})"


@transaction.atomic
def reevaluate_change_request(cr: ChangeRequest, *, actor: Any) -> ChangeRequest:
    """Ask again for the evaluations of an active change request whose evaluation failed or was cancelled, or
    whose baseline is no longer production: then it is judged against production now, and approvals given on
    the old comparison are voided (a signature rests on the evidence it saw)."""
    cr, version = _locked(cr)
    check_reevaluate(cr, actor)
    before = cr_state(cr)
    if production_moved(cr):
        cr.base_version = production_version(cr.program)
        save(cr, actor=actor, fields=["base_version"])
        void_approvals(version, live_approvals(cr, version.content_hash), actor=actor,
                       reason=f"production is {_described(cr.base_version)} now: change request {cr.pk} is "
                              "evaluated against it again")
    _attach_evidence(cr, version, actor=actor)
    record_event("change_request.reevaluated", actor=actor, obj=cr, program=cr.program, before=before,
                 after=cr_state(cr))
    return cr


# --- actions ------------------------------------------------------------------------------------------------


@transaction.atomic
def open_change_request(version: PromptVersion, *, actor: Any, title: str, description: str = "",
                        ticket_ref: str = "", impact: str = ImpactClass.MEDIUM,
                        provenance: dict[str, Any] | None = None) -> ChangeRequest:
    """Propose a draft version for review against the current production version (draft -> in_review).

    The system evaluates the candidate and production on the program's test dataset (the gate's only scores)
    and runs the candidate checks. `provenance` is the optimization run's account of itself (system-written,
    shown as context; never a score that gates anything).
    """
    require_role(actor, Role.AUTHOR, version.program, doing="open change requests")
    title = require_text(title, field="title", max_length=200)
    if impact not in ImpactClass.values:
        raise InvalidInput(f"impact must be one of {', '.join(ImpactClass.values)}", field="impact")
    version = lock(version)
    check_openable(version, active_change_request(version))
    evaluation_dataset(version.program)  # refuse before writing anything
    cr = create(ChangeRequest, by=actor, program=version.program, version=version,
                base_version=production_version(version.program), title=title, description=description or "",
                ticket_ref=ticket_ref or "", impact=impact, evaluation=provenance or {}, opened_by=actor)
    record_event("change_request.opened", actor=actor, obj=cr, program=cr.program, after=cr_state(cr))
    _set_version_status(version, VersionStatus.IN_REVIEW, actor=actor, action="version.submitted")
    _attach_evidence(cr, version, actor=actor)
    send_on_commit(change_request_opened, ChangeRequest, instance=cr, actor=actor)
    return cr


def approve_change_request(cr: ChangeRequest, *, actor: Any, password: str, content_hash: str, reason: str = "",
                           meaning: str = SignatureMeaning.APPROVAL) -> Review:
    """Sign an approval of the content the reviewer saw (`content_hash`, which must still be current).

    Reviewer role, member, not author/run starter/opener, and the system's evaluations finished. Re-authenticates
    first, outside the approval's transaction, so a wrong password leaves a durable "signature.failed" event.
    When the distinct live approvals reach the policy's count, the version becomes approved (frozen) and the
    change request approved, in the same transaction as the last signature.
    """
    check_meaning(Decision.APPROVE, meaning)
    check_reviewer(cr.program, actor)
    reauthenticate(cr, actor, password, doing="approve")
    return _approve(cr, actor=actor, reason=reason, meaning=meaning, content_hash=content_hash,
                    auth={"auth_method": "password"})


def decide_through_provider(cr: ChangeRequest, *, actor: Any, decision: str, content_hash: str, reason: str,
                            meaning: str, auth: dict[str, Any]) -> Review:
    """A decision whose signer the identity provider has just re-authenticated (governance.actions.identities
    checked the proof: nonce, issuer and sub of the signer, a fresh auth_time); `auth` is what the signature
    records of it (auth_method "oidc", auth_issuer, auth_subject, auth_time). Same checks as the password path."""
    check_meaning(decision, meaning)
    if decision != Decision.APPROVE:
        reason = require_reason(reason, doing=DECISION_MOVES[decision][0])
    check_reviewer(cr.program, actor)
    decide = {Decision.APPROVE: _approve, Decision.REJECT: _reject, Decision.REQUEST_CHANGES: _request_changes}
    return decide[decision](cr, actor=actor, reason=reason, meaning=meaning, content_hash=content_hash, auth=auth)


@transaction.atomic
def _approve(cr: ChangeRequest, *, actor: Any, reason: str, meaning: str, content_hash: str,
             auth: dict[str, Any]) -> Review:
    cr, version = _locked(cr)
    check_decidable(cr, version, actor, Decision.APPROVE)
    check_seen(version, content_hash, doing="approve")
    _compare_if_ready(cr)  # normally recorded when the last evaluation finished; a crash in between is healed here
    approvers = set(live_approvals(cr, version.content_hash).values_list("reviewer_id", flat=True)) | {actor.pk}
    final = len(approvers) >= required_approvals(cr.program)
    if final:
        check_score_gate(cr)
    review = _sign(cr, version, actor, decision=Decision.APPROVE, reason=reason, meaning=meaning, auth=auth)
    if final:
        _set_version_status(version, VersionStatus.APPROVED, actor=actor, action="version.approved",
                            reason=f"{len(approvers)} distinct approvals on change request {cr.pk}",
                            approved_at=timezone.now())
        close_change_request(cr, actor=actor, status=ChangeRequestStatus.APPROVED)
        send_on_commit(change_request_approved, ChangeRequest, instance=cr, actor=actor)
    return review


def reject_change_request(cr: ChangeRequest, *, actor: Any, reason: str, content_hash: str,
                          password: str | None = None, meaning: str = SignatureMeaning.REJECTION) -> Review:
    """Reject the change the reviewer saw (reason required): the change request and the version end rejected.

    With `password`, the signature is re-authenticated like an approval (auth_method "password");
    without, it rests on the logged-in session (auth_method "session").
    """
    check_meaning(Decision.REJECT, meaning)
    reason = require_reason(reason, doing="reject a change request")
    check_reviewer(cr.program, actor)
    if password is not None:
        reauthenticate(cr, actor, password, doing="reject")
    return _reject(cr, actor=actor, reason=reason, meaning=meaning, content_hash=content_hash,
                   auth={"auth_method": "password" if password is not None else "session"})


@transaction.atomic
def _reject(cr: ChangeRequest, *, actor: Any, reason: str, meaning: str, content_hash: str,
            auth: dict[str, Any]) -> Review:
    cr, version = _locked(cr)
    check_decidable(cr, version, actor, Decision.REJECT)
    check_seen(version, content_hash, doing="reject")
    review = _sign(cr, version, actor, decision=Decision.REJECT, reason=reason, meaning=meaning, auth=auth)
    close_change_request(cr, actor=actor, status=ChangeRequestStatus.REJECTED, reason=reason)
    _set_version_status(version, VersionStatus.REJECTED, actor=actor, action="version.rejected", reason=reason)
    send_on_commit(change_request_rejected, ChangeRequest, instance=cr, actor=actor)
    return review


def request_changes(cr: ChangeRequest, *, actor: Any, reason: str, content_hash: str, password: str | None = None,
                    meaning: str = SignatureMeaning.REVIEW) -> Review:
    """Send the version the reviewer saw back to its author (reason required): version in_review -> draft."""
    check_meaning(Decision.REQUEST_CHANGES, meaning)
    reason = require_reason(reason, doing="request changes")
    check_reviewer(cr.program, actor)
    if password is not None:
        reauthenticate(cr, actor, password, doing="request changes")
    return _request_changes(cr, actor=actor, reason=reason, meaning=meaning, content_hash=content_hash,
                            auth={"auth_method": "password" if password is not None else "session"})


@transaction.atomic
def _request_changes(cr: ChangeRequest, *, actor: Any, reason: str, meaning: str, content_hash: str,
                     auth: dict[str, Any]) -> Review:
    cr, version = _locked(cr)
    check_decidable(cr, version, actor, Decision.REQUEST_CHANGES)
    check_seen(version, content_hash, doing="request changes")
    review = _sign(cr, version, actor, decision=Decision.REQUEST_CHANGES, reason=reason, meaning=meaning,
                   auth=auth)
    transition(cr, ChangeRequestStatus.CHANGES_REQUESTED, actor=actor, action="change_request.changes_requested",
               state=cr_state, reason=reason)
    _set_version_status(version, VersionStatus.DRAFT, actor=actor, action="version.returned_to_draft",
                        reason=reason)
    send_on_commit(change_request_changes_requested, ChangeRequest, instance=cr, actor=actor)
    return review


@transaction.atomic
def resubmit_change_request(cr: ChangeRequest, *, actor: Any, reason: str = "") -> ChangeRequest:
    """Put the (edited) version back in review: approvals of content it no longer has stay void, and the system
    evaluates the new content (and production, which may have moved) again."""
    cr, version = _locked(cr)
    check_resubmit(cr, actor)
    evaluation_dataset(cr.program)
    void_stale_approvals(version, actor=actor, reason=f"change request {cr.pk} resubmitted with new content")
    before = cr_state(cr)
    cr.status = ChangeRequestStatus.OPEN
    cr.base_version = production_version(cr.program)  # production may have moved while the author worked
    save(cr, actor=actor, fields=["status", "base_version"])
    _attach_evidence(cr, version, actor=actor)
    record_event("change_request.resubmitted", actor=actor, obj=cr, program=cr.program, before=before,
                 after=cr_state(cr), reason=reason)
    _set_version_status(version, VersionStatus.IN_REVIEW, actor=actor, action="version.submitted", reason=reason)
    send_on_commit(change_request_opened, ChangeRequest, instance=cr, actor=actor, resubmitted=True)
    return cr


@transaction.atomic
def withdraw_change_request(cr: ChangeRequest, *, actor: Any, reason: str = "") -> ChangeRequest:
    """The proposer takes the change back; an in-review version returns to draft (it can be proposed again)."""
    cr, version = _locked(cr)
    check_withdraw(cr, actor)
    close_change_request(cr, actor=actor, status=ChangeRequestStatus.WITHDRAWN, reason=reason)
    if version.status == VersionStatus.IN_REVIEW:
        _set_version_status(version, VersionStatus.DRAFT, actor=actor, action="version.returned_to_draft",
                            reason=reason)
    return cr


def submit_for_review(version: PromptVersion, *, actor: Any, title: str = "", description: str = "",
                      ticket_ref: str = "", impact: str = ImpactClass.MEDIUM) -> ChangeRequest:
    """The portal's "submit" button: resubmit the version's change request after requested changes, else open one."""
    existing = active_change_request(version)
    if existing is not None and existing.status == ChangeRequestStatus.CHANGES_REQUESTED:
        return resubmit_change_request(existing, actor=actor)
    return open_change_request(version, actor=actor, title=title or f"Review {version.program.slug} v{version.number}",
                               description=description, ticket_ref=ticket_ref, impact=impact)


# --- what a user may do now (governance.actions.rights gathers these tables) ---------------------------------


def check_review(cr: ChangeRequest, user: Any, decision: str) -> None:
    """Everything a review decision checks before the password and the content hash."""
    check_reviewer(cr.program, user)
    check_decidable(cr, cr.version, user, decision)


def check_resubmit(cr: ChangeRequest, user: Any) -> None:
    check_proposer(cr, user, doing="resubmit it")
    expect_transition(cr, ChangeRequestStatus.OPEN, doing="be resubmitted")
    expect_transition(cr.version, VersionStatus.IN_REVIEW, doing="be resubmitted")


def check_withdraw(cr: ChangeRequest, user: Any) -> None:
    check_proposer(cr, user, doing="withdraw it")
    expect_transition(cr, ChangeRequestStatus.WITHDRAWN, doing="be withdrawn")


def check_submit(version: PromptVersion, user: Any) -> None:
    """The portal's "submit": resubmit the version's change request after requested changes, else open one."""
    existing = active_change_request(version)
    if existing is not None and existing.status == ChangeRequestStatus.CHANGES_REQUESTED:
        check_resubmit(existing, user)
        return
    require_role(user, Role.AUTHOR, version.program, doing="open change requests")
    check_openable(version, existing)


def check_openable(version: PromptVersion, existing: ChangeRequest | None) -> None:
    if existing is not None:
        raise IllegalTransition(f"version {version.number} already has change request {existing.pk} "
                                f"({existing.status})")
    expect_transition(version, VersionStatus.IN_REVIEW, doing="be submitted for review")


REVIEW_CHECKS: Checks = {
    "approve": lambda cr, user: check_review(cr, user, Decision.APPROVE),
    "reject": lambda cr, user: check_review(cr, user, Decision.REJECT),
    "request_changes": lambda cr, user: check_review(cr, user, Decision.REQUEST_CHANGES),
    "resubmit": check_resubmit,
    "withdraw": check_withdraw,
}
SUBMIT_CHECKS: Checks = {"submit": check_submit}


def check_reevaluate(cr: ChangeRequest, user: Any) -> None:
    require_member(user, cr.program)
    expect_status(cr.status, ACTIVE_CR_STATUSES, subject=f"change request {cr.pk}", doing="be evaluated again")
    failed = [e for e in (cr.candidate_evaluation, cr.baseline_evaluation)
              if e is None or e.status in (EvaluationStatus.FAILED, EvaluationStatus.CANCELLED)]
    if not failed and not production_moved(cr):
        raise IllegalTransition(f"change request {cr.pk} has no failed or missing evaluation to run again, and "
                                "production has not changed since it was evaluated")


REEVALUATE_CHECKS: Checks = {"reevaluate": check_reevaluate}


def allowed_review_actions(cr: ChangeRequest, user: Any) -> set[str]:
    """The review buttons `user` may use on `cr` now: the same checks the actions make, without raising."""
    return allowed(REVIEW_CHECKS, cr, user)


def is_live_approval(review: Review, content_hash: str) -> bool:
    """An approval that still counts: not voided and bound to the current content (live_approvals, per row)."""
    return review.decision == Decision.APPROVE and not review.voided and review.content_hash == content_hash


def score_gate_blocks(cr: ChangeRequest) -> bool:
    """Both test scores are in and the policy's score gate refuses the final approval."""
    candidate, production = gate_scores(cr)
    if candidate is None or production is None:
        return False
    try:
        check_score_gate(cr)
    except IllegalTransition:
        return True
    return False

