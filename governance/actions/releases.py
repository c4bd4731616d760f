"""Release labels: every move (release, rollback, fallback pin, kill switch) is a new Release record.

Labels point at approved versions only. Whoever makes a version serve must be a releaser who neither wrote it,
started the run that produced it, nor approved it (author != approver != releaser). Each move needs a reason.
All moves lock the program row first, so label creation and retirement cannot race a release.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction

from governance.actions._common import (
    PRODUCTION_LABEL,
    Checks,
    create,
    expect_status,
    lock,
    require_reason,
    save,
    send_on_commit,
)
from governance.actions.approvals import has_live_approval
from governance.audit import record_event
from governance.errors import IllegalTransition, InvalidInput, SegregationOfDuties
from governance.models import (
    ChangeRequest,
    ChangeRequestStatus,
    Program,
    PromptVersion,
    Release,
    ReleaseAction,
    ReleaseLabel,
    Role,
    VersionStatus,
)
from governance.permissions import require_role
from governance.signals import release_rolled_back, version_released

# --- checks and reading -------------------------------------------------------------------------------------


def _label_name(label: str) -> str:
    try:
        validate_slug(label or "")
    except ValidationError:
        raise InvalidInput(f"label {label!r} may contain only letters, digits, '-' and '_'", field="label") from None
    return label


def check_releaser(version: PromptVersion, actor: Any) -> None:
    """Releaser role and membership, and none of the version's author, run starter or approvers."""
    require_role(actor, Role.RELEASER, version.program, doing="move release labels")
    who = f"user {actor.get_username()!r}"
    if actor.pk == version.created_by_id:
        raise SegregationOfDuties(f"{who} is the author of version {version.number} and cannot release it")
    if version.run_id and actor.pk == version.run.started_by_id:
        raise SegregationOfDuties(f"{who} started optimization run {version.run_id}, which produced version "
                                  f"{version.number}, and cannot release it")
    if has_live_approval(version, actor, version.content_hash):
        raise SegregationOfDuties(f"{who} approved version {version.number} and cannot also release it")


def check_release(version: PromptVersion, actor: Any) -> None:
    """An approved version and a releaser who had no hand in it."""
    expect_status(version.status, [VersionStatus.APPROVED], subject=f"version {version.number}", doing="be released")
    check_releaser(version, actor)


def check_moves_labels(program: Program, actor: Any) -> None:
    require_role(actor, Role.RELEASER, program, doing="move release labels")


def check_kill_switch(label: ReleaseLabel, actor: Any) -> None:
    require_role(actor, Role.RELEASER, label.program, doing="switch the kill switch")
    if not label.kill_switch and not label.fallback_version_id:
        raise IllegalTransition(f"label {label.name!r} of {label.program.slug} has no pinned fallback version; "
                                "pin one before engaging the kill switch")


# What a user may do now (governance.actions.rights gathers these tables).
VERSION_RELEASE_CHECKS: Checks = {"release": check_release}
PROGRAM_RELEASE_CHECKS: Checks = {"move_labels": check_moves_labels}
LABEL_CHECKS: Checks = {"rollback": lambda label, actor: check_moves_labels(label.program, actor),
                        "pin_fallback": lambda label, actor: check_moves_labels(label.program, actor),
                        "kill_switch": check_kill_switch}


def _same_program(version: PromptVersion, program: Program) -> None:
    if version.program_id != program.pk:
        raise InvalidInput(f"version {version.number} belongs to program {version.program.slug}, not {program.slug}",
                           field="version")


def _releasable(version: PromptVersion, program: Program, doing: str) -> PromptVersion:
    """A fresh, locked copy of an approved version of `program`."""
    _same_program(version, program)
    version = lock(version)
    expect_status(version.status, [VersionStatus.APPROVED], subject=f"version {version.number}", doing=doing)
    return version


def _existing_label(program: Program, label: str, *, doing: str) -> ReleaseLabel:
    found = ReleaseLabel.objects.select_for_update(no_key=True).filter(program=program, name=label).first()
    if found is None:
        raise IllegalTransition(f"program {program.slug} has no {label!r} label; nothing to {doing}")
    return found


def label_history(program: Program, label: str) -> list[int]:
    """Version ids the label has stood on, oldest first, with rolled-back versions popped off.

    Releases push; a rollback pops back to its target, so rolling back twice walks further back in time
    instead of toggling between two versions.
    """
    stack: list[int] = []
    moves = Release.objects.filter(program=program, label=label,
                                   action__in=[ReleaseAction.RELEASE, ReleaseAction.ROLLBACK]).order_by("created_at", "id")
    for move in moves:
        if move.action == ReleaseAction.ROLLBACK and move.version_id in stack:
            while stack[-1] != move.version_id:
                stack.pop()
        else:
            stack.append(move.version_id)
    return stack


def _record_move(move: LabelMove, *, actor: Any, previous: PromptVersion | None, reason: str,
                 audit_action: str) -> Release:
    program, label, version = move.program, move.label, move.version
    release = create(Release, by=actor, program=program, label=label, action=move.action, version=version,
                     previous_version=previous, reason=reason, actor=actor)
    record_event(audit_action, actor=actor, obj=release, program=program, reason=reason,
                 before={"label": label, "version": previous.number if previous else None,
                         "content_hash": previous.content_hash if previous else None},
                 after={"label": label, "version": version.number, "content_hash": version.content_hash,
                        "action": move.action, "release": release.pk,
                        **({"warnings": list(move.warnings)} if move.warnings else {})})
    return release


# --- plans: what a move would do, checked as the move itself checks it ------------------------------------------


@dataclass(frozen=True)
class LabelMove:
    """What one move of a label changes: the version it records and what the label serves before and after.

    The portal shows it on the confirmation step; the action applies the same plan, so what was confirmed is
    what happens (or the action refuses, when something changed in between).
    """

    program: Program
    label: str
    action: str  # a ReleaseAction
    version: PromptVersion  # released, rolled back to, pinned, or serving once the kill switch moved
    serving_before: PromptVersion | None
    serving_after: PromptVersion
    current: ReleaseLabel | None  # the label row (locked inside the action's transaction); None: created
    warnings: tuple[str, ...] = ()

    @property
    def creates_label(self) -> bool:
        return self.current is None


def _no_op_warning(label: ReleaseLabel | None, serving: PromptVersion, fallback_id: int | None) -> tuple[str, ...]:
    if label is not None and fallback_id == serving.pk:
        return (f"the fallback of label {label.name!r} would be version {serving.number}, the version it serves: "
                "its kill switch would change nothing until another fallback is pinned",)
    return ()


def _stale_evidence_warning(version: PromptVersion, label: str,
                            production: PromptVersion | None) -> tuple[str, ...]:
    """A production release of a version approved against another version than production holds now: no system
    evaluation compared the two. (An open change request cannot be approved in that state, see
    reviews.check_current_base; one approved before production moved can.)"""
    if label != PRODUCTION_LABEL:
        return ()
    cr = (ChangeRequest.objects.filter(version=version, status=ChangeRequestStatus.APPROVED)
          .select_related("base_version").order_by("-closed_at", "-id").first())
    if cr is None or cr.base_version_id == (production.pk if production is not None else None):
        return ()
    was = f"version {cr.base_version.number}" if cr.base_version_id else "the program's spec"
    now = f"version {production.number}" if production is not None else "nothing"
    return (f"version {version.number} was approved against {was}, but production holds {now} now: no system "
            "evaluation compared the two (a new change request for this content would)",)


def _label_for_release(program: Program, label: str, new_label: bool | None) -> ReleaseLabel | None:
    """The label row to move, or None to create it; a typo must not create a label by accident."""
    current = ReleaseLabel.objects.select_for_update(no_key=True).filter(program=program, name=label).first()
    if new_label is True and current is not None:
        raise InvalidInput(f"label {label!r} already exists in {program.slug}; choose it instead of creating it",
                           field="label")
    if new_label is False and current is None:
        names = ", ".join(repr(n) for n in program.labels.order_by("name").values_list("name", flat=True))
        raise InvalidInput(f"program {program.slug} has no label {label!r} (its labels: {names or 'none'}); "
                           "choose an existing label, or create a new one explicitly", field="label")
    return current


@transaction.atomic
def plan_release(version: PromptVersion, *, actor: Any, label: str = PRODUCTION_LABEL,
                 new_label: bool | None = None) -> LabelMove:
    """Point `label` at an approved version. `new_label`: True creates the label (refused if it exists), False
    moves an existing one (refused if missing), None does either (the API's and scripts' behaviour)."""
    label = _label_name(label)
    program = lock(version.program)
    version = _releasable(version, program, "be released")
    check_releaser(version, actor)
    current = _label_for_release(program, label, new_label)
    if current is not None and current.version_id == version.pk:
        raise IllegalTransition(f"version {version.number} is already the {label!r} version of {program.slug}")
    serving_before = current.serving_version if current else None
    serving_after = serving_before if current is not None and current.kill_switch else version
    warnings = _no_op_warning(current, version, current.fallback_version_id if current else None)
    warnings += _stale_evidence_warning(version, label, current.version if current else None)
    if current is not None and current.kill_switch:
        warnings += (f"the kill switch of {label!r} is on: it keeps serving fallback version "
                     f"{serving_before.number} until the switch is released",)
    return LabelMove(program, label, ReleaseAction.RELEASE, version, serving_before, serving_after, current, warnings)


@transaction.atomic
def plan_rollback(program: Program, *, actor: Any, label: str = PRODUCTION_LABEL,
                  to_version: PromptVersion | None = None) -> LabelMove:
    """Move `label` back: to the previous approved version in its history, or to `to_version` from that history."""
    program = lock(program)
    current = _existing_label(program, label, doing="roll back")
    history = label_history(program, label)
    if to_version is None:
        target = _previous_approved(history, current)
        if target is None:
            raise IllegalTransition(f"nothing to roll back: label {label!r} of {program.slug} has no earlier "
                                    f"approved version than version {current.version.number}")
    else:
        if to_version.pk == current.version_id:
            raise IllegalTransition(f"version {to_version.number} is already the {label!r} version")
        if to_version.pk not in history:
            raise IllegalTransition(f"version {to_version.number} was never released as {label!r}; "
                                    "release it instead of rolling back")
        target = to_version
    target = _releasable(target, program, "be rolled back to")
    check_releaser(target, actor)
    serving_after = current.serving_version if current.kill_switch else target
    return LabelMove(program, label, ReleaseAction.ROLLBACK, target, current.serving_version, serving_after, current,
                     _no_op_warning(current, target, current.fallback_version_id))


def check_fallback(label: ReleaseLabel, version: PromptVersion) -> None:
    """A fallback must differ from the label's release: engaging the kill switch would otherwise change nothing."""
    if version.pk == label.version_id:
        raise IllegalTransition(f"version {version.number} is the version label {label.name!r} serves; its fallback "
                                "must be a different approved version, or the kill switch would change nothing")


@transaction.atomic
def plan_fallback(program: Program, *, actor: Any, label: str = PRODUCTION_LABEL, version: PromptVersion) -> LabelMove:
    """Name the approved version the label serves while its kill switch is on."""
    _same_program(version, program)
    program = lock(program)
    current = _existing_label(program, label, doing="pin a fallback for (release a version first)")
    version = _releasable(version, program, "be pinned as fallback")
    check_releaser(version, actor)
    if current.fallback_version_id == version.pk:
        raise IllegalTransition(f"version {version.number} is already the fallback of label {label!r}")
    check_fallback(current, version)
    serving_after = version if current.kill_switch else current.serving_version
    return LabelMove(program, label, ReleaseAction.FALLBACK_PINNED, version, current.serving_version, serving_after,
                     current)


@transaction.atomic
def plan_kill_switch(program: Program, *, actor: Any, label: str = PRODUCTION_LABEL, on: bool) -> LabelMove:
    """Engage (serve the pinned fallback instead of the release) or release the kill switch of a label."""
    require_role(actor, Role.RELEASER, program, doing="switch the kill switch")
    program = lock(program)
    current = _existing_label(program, label, doing="switch off")
    if current.kill_switch == on:
        raise IllegalTransition(f"the kill switch of label {label!r} is already {'on' if on else 'off'}")
    if on and current.fallback_version_id is None:
        raise IllegalTransition(f"label {label!r} of {program.slug} has no pinned fallback version; "
                                "pin one before engaging the kill switch")
    if on:
        check_fallback(current, current.fallback_version)
    serving_after = current.fallback_version if on else current.version
    action = ReleaseAction.KILL_SWITCH_ON if on else ReleaseAction.KILL_SWITCH_OFF
    return LabelMove(program, label, action, serving_after, current.serving_version, serving_after, current)


# --- actions ------------------------------------------------------------------------------------------------


@transaction.atomic
def release_version(version: PromptVersion, *, actor: Any, label: str = PRODUCTION_LABEL, reason: str,
                    new_label: bool | None = None) -> Release:
    """Point `label` at an approved version (see plan_release for `new_label`).

    While the label's kill switch is on it keeps serving the fallback; the switch is released separately.
    """
    reason = require_reason(reason, doing="release a version")
    move = plan_release(version, actor=actor, label=label, new_label=new_label)
    previous = move.current.version if move.current else None
    if move.current is None:
        create(ReleaseLabel, by=actor, program=move.program, name=move.label, version=move.version)
    else:
        move.current.version = move.version
        save(move.current, actor=actor, fields=["version", "updated_at"])
    release = _record_move(move, actor=actor, previous=previous, reason=reason, audit_action="release.created")
    send_on_commit(version_released, Release, instance=release, actor=actor)
    return release


@transaction.atomic
def rollback(program: Program, *, actor: Any, label: str = PRODUCTION_LABEL, to_version: PromptVersion | None = None,
             reason: str) -> Release:
    """Move `label` back: to the previous approved version in its history, or to `to_version` from that history."""
    reason = require_reason(reason, doing="roll back")
    move = plan_rollback(program, actor=actor, label=label, to_version=to_version)
    previous = move.current.version
    move.current.version = move.version
    save(move.current, actor=actor, fields=["version", "updated_at"])
    release = _record_move(move, actor=actor, previous=previous, reason=reason, audit_action="release.rolled_back")
    send_on_commit(release_rolled_back, Release, instance=release, actor=actor)
    return release


def _previous_approved(history: list[int], current: ReleaseLabel) -> PromptVersion | None:
    earlier = [pk for pk in history if pk != current.version_id]
    approved = set(PromptVersion.objects.filter(pk__in=earlier, status=VersionStatus.APPROVED).values_list("pk", flat=True))
    for pk in reversed(earlier):
        if pk in approved:
            return PromptVersion.objects.get(pk=pk)
    return None


@transaction.atomic
def pin_fallback(program: Program, *, actor: Any, label: str = PRODUCTION_LABEL, version: PromptVersion,
                 reason: str) -> Release:
    """Name the approved version the label serves while its kill switch is on (never the release itself)."""
    reason = require_reason(reason, doing="pin a fallback version")
    move = plan_fallback(program, actor=actor, label=label, version=version)
    previous = move.current.fallback_version
    move.current.fallback_version = move.version
    save(move.current, actor=actor, fields=["fallback_version", "updated_at"])
    return _record_move(move, actor=actor, previous=previous, reason=reason, audit_action="release.fallback_pinned")


@transaction.atomic
def set_kill_switch(program: Program, *, actor: Any, label: str = PRODUCTION_LABEL, on: bool, reason: str) -> Release:
    """Engage (serve the pinned fallback) or release the label's kill switch (releaser role).

    No segregation check beyond the role: the fallback passed it when it was pinned, and an emergency stop
    should not wait for a particular person.
    """
    reason = require_reason(reason, doing="switch the kill switch")
    move = plan_kill_switch(program, actor=actor, label=label, on=on)
    move.current.kill_switch = on
    save(move.current, actor=actor, fields=["kill_switch", "updated_at"])
    return _record_move(move, actor=actor, previous=move.serving_before, reason=reason,
                        audit_action=f"release.{move.action}")
