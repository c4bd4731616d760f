"""Prompt versions: created and edited as drafts, submitted for review, withdrawn, retired.

Approval happens in governance.actions.reviews (which builds on this module, never the other way round); once approved a version is frozen (model guard + trigger).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from governance.actions._common import (
    Checks,
    allowed,
    create,
    expect_status,
    expect_transition,
    lock,
    require_reason,
    save,
    transition,
    user_ref,
)
from governance.actions.programs import interface, parse_spec
from governance.audit import record_event
from governance.errors import FrozenVersionError, IllegalTransition, InvalidInput, PermissionDenied
from governance.models import (
    FROZEN_STATUSES,
    ChangeRequest,
    ChangeRequestStatus,
    Decision,
    OptimizationRun,
    Program,
    PromptVersion,
    ReleaseLabel,
    Review,
    Role,
    VersionOrigin,
    VersionStatus,
    payload_hash,
)
from governance.permissions import require_role

ACTIVE_CR_STATUSES = (ChangeRequestStatus.OPEN, ChangeRequestStatus.CHANGES_REQUESTED)
_LM_REQUIRED = ("model", "temperature", "max_tokens")
_LM_OPTIONAL = ("mode",)  # chat vs completion rendering changes behaviour, so it belongs to the approved content
_UNSET: Any = object()


# --- payloads -----------------------------------------------------------------------------------------------


def initial_payload(program: Program) -> dict[str, Any]:
    """The payload of a first version: the program's spec and its default LM settings."""
    lm = program.lm_config or {}
    return {"program": program.spec,
            "lm": {"model": lm.get("model", settings.GOVERNANCE_DEFAULT_MODEL),
                   "temperature": lm.get("temperature", 0.0), "max_tokens": lm.get("max_tokens", 256)}}


def _describe(spec_interface: list[dict[str, Any]]) -> str:
    def names(fields: list[tuple[str, str, tuple[str, ...]]]) -> str:
        return ", ".join(name for name, _, _ in fields)
    return "; ".join(f"{p['name']}({names(p['inputs'])} -> {names(p['outputs'])})" for p in spec_interface)


def validate_payload(program: Program, payload: Any) -> dict[str, Any]:
    """The payload normalized (program JSON with defaults filled in), or InvalidInput on field "payload".

    The program part must parse and keep the program's interface: same predictors, fields, types and choices
    (datasets and metrics were defined on them). The LM part names the model the approval is valid for.
    """
    if not isinstance(payload, dict) or set(payload) != {"program", "lm"}:
        raise InvalidInput('payload must be an object with exactly the keys "program" and "lm"', field="payload")
    candidate = parse_spec(payload["program"], field="payload")
    expected = interface(parse_spec(program.spec))
    if interface(candidate) != expected:
        raise InvalidInput(f"payload.program must keep the predictors and fields of {program.slug}, including "
                           f"types and choices (expected {_describe(expected)}, got {_describe(interface(candidate))})",
                           field="payload")
    return {"program": candidate.to_dict(), "lm": _validate_lm(payload["lm"])}


def _validate_lm(lm: Any) -> dict[str, Any]:
    if not isinstance(lm, dict):
        raise InvalidInput("payload.lm must be an object", field="payload")
    missing = [key for key in _LM_REQUIRED if key not in lm]
    unknown = sorted(set(lm) - set(_LM_REQUIRED) - set(_LM_OPTIONAL))
    if missing or unknown:
        raise InvalidInput(f"payload.lm needs exactly {', '.join(_LM_REQUIRED)} (optional: mode); "
                           f"missing {missing or 'none'}, unknown {unknown or 'none'}", field="payload")
    if not isinstance(lm["model"], str) or not lm["model"].strip():
        raise InvalidInput("payload.lm.model must be a non-empty model string", field="payload")
    temperature = lm["temperature"]
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
        raise InvalidInput("payload.lm.temperature must be a number >= 0", field="payload")
    if isinstance(lm["max_tokens"], bool) or not isinstance(lm["max_tokens"], int) or lm["max_tokens"] < 1:
        raise InvalidInput("payload.lm.max_tokens must be an integer >= 1", field="payload")
    return dict(lm)


def _validate_scores(scores: Any, run: OptimizationRun | None) -> dict[str, float]:
    """Scores are the system's: only a run's own final evaluation records them on the version it proposes."""
    if scores is None:
        return {}
    if run is None:
        raise InvalidInput("scores come only from the system's evaluations; a version cannot carry scores "
                           "its author sends", field="scores")
    if not isinstance(scores, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in scores.items()):
        raise InvalidInput('scores must map split names to numbers, e.g. {"val": 0.8}', field="scores")
    return {k: float(v) for k, v in scores.items()}


def version_state(version: PromptVersion) -> dict[str, Any]:
    """The audited picture of a version (content by hash; payload shown where it changes)."""
    return {"number": version.number, "status": version.status, "content_hash": version.content_hash,
            "origin": version.origin, "parent": version.parent_id, "run": version.run_id,
            "scores": version.scores, "note": version.note}


def cr_state(cr: ChangeRequest) -> dict[str, Any]:
    return {"status": cr.status, "version": cr.version.number, "content_hash": cr.version.content_hash,
            "base_version": cr.base_version.number if cr.base_version_id else None, "title": cr.title,
            "ticket_ref": cr.ticket_ref, "impact": cr.impact, "recommended": cr.recommended,
            "candidate_evaluation": cr.candidate_evaluation_id, "baseline_evaluation": cr.baseline_evaluation_id}


def active_change_request(version: PromptVersion) -> ChangeRequest | None:
    """The version's open or changes-requested change request, if any (at most one exists)."""
    return version.change_requests.filter(status__in=ACTIVE_CR_STATUSES).order_by("-id").first()


def require_version_author(version: PromptVersion, actor: Any, *, doing: str) -> None:
    """Only the author may change or withdraw their draft: an editor would be an author the SoD rules miss."""
    if version.created_by_id != getattr(actor, "pk", None):
        raise PermissionDenied(f"only the author of version {version.number} "
                               f"({version.created_by.get_username()}) may {doing}")


# --- actions ------------------------------------------------------------------------------------------------


def close_change_request(cr: ChangeRequest, *, actor: Any, status: str, reason: str = "") -> None:
    """Move an active change request to a final status, audited as "change_request.<status>"."""
    transition(cr, status, actor=actor, action=f"change_request.{status}", state=cr_state, reason=reason,
               closed_at=timezone.now())


def void_stale_approvals(version: PromptVersion, *, actor: Any, reason: str) -> int:
    """Void every live approval of `version` bound to content it no longer has; each is audited."""
    stale = Review.objects.filter(version=version, decision=Decision.APPROVE, voided=False) \
        .exclude(content_hash=version.content_hash)
    return void_approvals(version, stale, actor=actor, reason=reason)


def void_approvals(version: PromptVersion, approvals: QuerySet[Review], *, actor: Any, reason: str) -> int:
    """Void the given live approvals of `version` (they no longer count towards approving it); each is audited."""
    approvals = list(approvals.select_related("reviewer", "version"))
    for review in approvals:
        review.voided = True
        save(review, actor=actor, fields=["voided"])
        record_event("review.voided", actor=actor, obj=review, program=version.program,
                     before={"voided": False, "content_hash": review.content_hash},
                     after={"voided": True, "content_hash": version.content_hash}, reason=reason)
    return len(approvals)




@transaction.atomic
def create_version(program: Program, *, actor: Any, payload: dict[str, Any], origin: str = VersionOrigin.MANUAL,
                   parent: PromptVersion | None = None, run: OptimizationRun | None = None,
                   scores: dict[str, float] | None = None, note: str = "") -> PromptVersion:
    """A new draft version numbered next for its program (author role, member)."""
    require_role(actor, Role.AUTHOR, program, doing="create prompt versions")
    if origin not in VersionOrigin.values:
        raise InvalidInput(f"origin must be one of {', '.join(VersionOrigin.values)}", field="origin")
    for related, field in ((parent, "parent"), (run, "run")):
        if related is not None and related.program_id != program.pk:
            raise InvalidInput(f"{field} belongs to another program", field=field)
    payload = validate_payload(program, payload)
    scores = _validate_scores(scores, run)
    # The program row lock serializes numbering: two concurrent creators never read the same maximum.
    locked = lock(program)
    number = (locked.versions.aggregate(top=Max("number"))["top"] or 0) + 1
    version = create(PromptVersion, by=actor, program=locked, number=number, parent=parent, payload=payload,
                     origin=origin, run=run, scores=scores, note=note or "", created_by=actor)
    record_event("version.created", actor=actor, obj=version, program=program,
                 after={**version_state(version), "payload": payload})
    return version


@transaction.atomic
def edit_version(version: PromptVersion, *, actor: Any, payload: dict[str, Any] = _UNSET, note: str = _UNSET,
                 reason: str = "") -> PromptVersion:
    """Change a draft (its author only). New content voids every approval given to the old content."""
    version = lock(version)
    check_edit(version, actor)
    before = {**version_state(version), "payload": version.payload}
    if payload is not _UNSET:
        version.payload = validate_payload(version.program, payload)
        version.content_hash = payload_hash(version.payload)
    if note is not _UNSET:
        version.note = note or ""
    after = {**version_state(version), "payload": version.payload}
    if after == before:
        raise InvalidInput(f"nothing to change on version {version.number}")
    save(version, actor=actor)
    record_event("version.edited", actor=actor, obj=version, program=version.program, before=before, after=after,
                 reason=reason)
    if before["content_hash"] != version.content_hash:
        void_stale_approvals(version, actor=actor, reason=f"content changed by an edit of version {version.number}")
    return version


@transaction.atomic
def withdraw_version(version: PromptVersion, *, actor: Any, reason: str) -> PromptVersion:
    """Abandon a draft or in-review version for good (its author); its active change request is withdrawn too."""
    reason = require_reason(reason, doing="withdraw a version")
    require_version_author(version, actor, doing="withdraw it")  # before the locks: nothing to wait for
    cr = active_change_request(version)
    cr = lock(cr) if cr is not None else None  # change request before version: the order approvals lock in
    version = lock(version)
    check_withdraw(version, actor)
    if cr is not None and cr.status in ACTIVE_CR_STATUSES:
        close_change_request(cr, actor=actor, status=ChangeRequestStatus.WITHDRAWN, reason=reason)
    return transition(version, VersionStatus.WITHDRAWN, actor=actor, action="version.withdrawn", state=version_state,
                      reason=reason)


@transaction.atomic
def retire_version(version: PromptVersion, *, actor: Any, reason: str) -> PromptVersion:
    """approved -> retired (releaser role): no longer releasable. Refused while a label serves or pins it."""
    reason = require_reason(reason, doing="retire a version")
    require_role(actor, Role.RELEASER, version.program, doing="retire versions")
    lock(version.program)  # releases lock the program too, so no label can move onto this version meanwhile
    version = lock(version)
    check_retire(version, actor)
    return transition(version, VersionStatus.RETIRED, actor=actor, action="version.retired", state=version_state,
                      reason=reason, after={"retired_by": user_ref(actor)})


# --- what a user may do now (governance.actions.rights gathers these tables) ---------------------------------


def check_edit(version: PromptVersion, actor: Any) -> None:
    require_role(actor, Role.AUTHOR, version.program, doing="edit prompt versions")
    require_version_author(version, actor, doing="edit it")
    error = FrozenVersionError if version.status in FROZEN_STATUSES else IllegalTransition
    expect_status(version.status, [VersionStatus.DRAFT], subject=f"version {version.number}",
                  doing="be edited (create a new version instead)", error=error)


def check_withdraw(version: PromptVersion, actor: Any) -> None:
    require_role(actor, Role.AUTHOR, version.program, doing="withdraw prompt versions")
    require_version_author(version, actor, doing="withdraw it")
    expect_transition(version, VersionStatus.WITHDRAWN, doing="be withdrawn")


def check_retire(version: PromptVersion, actor: Any) -> None:
    require_role(actor, Role.RELEASER, version.program, doing="retire versions")
    expect_transition(version, VersionStatus.RETIRED, doing="be retired")
    for label in ReleaseLabel.objects.filter(Q(version=version) | Q(fallback_version=version)):
        role = "current version" if label.version_id == version.pk else "pinned fallback"
        raise IllegalTransition(f"version {version.number} is the {role} of label {label.name!r}; "
                                "move the label first")


VERSION_CHECKS: Checks = {"edit": check_edit, "withdraw": check_withdraw, "retire": check_retire}


def can_edit(version: PromptVersion, user: Any) -> bool:
    """For the portal: may `user` edit this version now?"""
    return "edit" in allowed(VERSION_CHECKS, version, user)
