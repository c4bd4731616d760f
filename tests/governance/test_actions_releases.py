"""Release labels: release, rollback, fallback pin and kill switch, each a Release record and an audit event."""

from __future__ import annotations

import pytest

from governance import signals
from governance.actions import (
    label_history,
    pin_fallback,
    release_version,
    retire_version,
    rollback,
    set_kill_switch,
    set_program_roles,
)
from governance.audit import _checkpoint_after_commit
from governance.errors import IllegalTransition, InvalidInput, PermissionDenied, SegregationOfDuties
from governance.models import ProgramMembership, Release, ReleaseAction, ReleaseLabel

pytestmark = pytest.mark.django_db


def domain_signals(callbacks):
    """On-commit callbacks other than the audit trail's own checkpoint check."""
    return [c for c in callbacks if c is not _checkpoint_after_commit]


def _label(program, name="production") -> ReleaseLabel:
    return ReleaseLabel.objects.get(program=program, name=name)


def test_release_creates_label_record_audit_and_signal(program, make_approved, releaser, audit,
                                                       django_capture_on_commit_callbacks):
    version = make_approved()
    audit.mark()
    received = []
    signals.version_released.connect(lambda sender, **kw: received.append(kw["instance"]), weak=False,
                                     dispatch_uid="t-released")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            release = release_version(version, actor=releaser, label="production", reason="first go-live")
    finally:
        signals.version_released.disconnect(dispatch_uid="t-released")
    assert received == [release]
    assert (release.action, release.version, release.previous_version, release.actor) == (
        ReleaseAction.RELEASE, version, None, releaser)
    assert _label(program).version == version
    assert audit.actions() == ["release.created"]
    event = audit.events()[0]
    assert event.reason == "first go-live"
    assert event.before == {"label": "production", "version": None, "content_hash": None}
    assert event.after["version"] == 1 and event.after["content_hash"] == version.content_hash


def test_second_release_records_previous_version(program, make_approved, releaser):
    v1, v2 = make_approved(), make_approved()
    release_version(v1, actor=releaser, reason="v1")
    release = release_version(v2, actor=releaser, reason="v2")
    assert release.previous_version == v1 and _label(program).version == v2
    with pytest.raises(IllegalTransition, match="version 2 is already the 'production' version of support"):
        release_version(v2, actor=releaser, reason="again")


def test_release_refuses_unapproved_version(make_cr, make_version, releaser, audit):
    cr = make_cr()
    audit.mark()
    with pytest.raises(IllegalTransition, match="version 1 is in_review; only approved versions can be released"):
        release_version(cr.version, actor=releaser, reason="too early")
    with pytest.raises(IllegalTransition, match="version 2 is draft; only approved versions can be released"):
        release_version(make_version(), actor=releaser, reason="draft")
    assert Release.objects.count() == 0
    assert audit.actions() == ["version.created"]


def test_release_needs_reason_role_and_membership(make_approved, users, releaser, audit):
    version = make_approved()
    audit.mark()
    with pytest.raises(InvalidInput, match="a reason is required to release a version") as info:
        release_version(version, actor=releaser, reason="")
    assert info.value.field == "reason"
    with pytest.raises(PermissionDenied, match="user 'reviewer3' needs the releaser role to move release labels"):
        release_version(version, actor=users["reviewer3"], reason="r")
    with pytest.raises(PermissionDenied, match="user 'outsider' is not a member of program support"):
        release_version(version, actor=users["outsider"], reason="r")
    with pytest.raises(InvalidInput, match="label 'prod uction' may contain only letters"):
        release_version(version, actor=releaser, label="prod uction", reason="r")
    assert audit.actions() == [] and Release.objects.count() == 0


def test_releaser_may_not_be_author_or_approver(users, make_approved, audit):
    author, reviewer1 = users["author"], users["reviewer1"]
    version = make_approved()
    for user in (author, reviewer1):  # even holding the releaser role on the program
        held = ProgramMembership.objects.get(program=version.program, user=user).roles
        set_program_roles(version.program, user, [*held, "releaser"], actor=None, reason="also releases")
    audit.mark()
    with pytest.raises(SegregationOfDuties, match="user 'author' is the author of version 1 and cannot release it"):
        release_version(version, actor=author, reason="self release")
    with pytest.raises(SegregationOfDuties, match="user 'reviewer1' approved version 1 and cannot also release it"):
        release_version(version, actor=reviewer1, reason="approver release")
    assert audit.actions() == [] and Release.objects.count() == 0


def test_rollback_goes_to_previous_approved_version_and_further(program, make_approved, releaser, audit,
                                                                django_capture_on_commit_callbacks):
    v1, v2, v3 = make_approved(), make_approved(), make_approved()
    for version in (v1, v2, v3):
        release_version(version, actor=releaser, reason=f"release v{version.number}")
    audit.mark()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        back = rollback(program, actor=releaser, label="production", reason="v3 misroutes refunds")
    assert len(domain_signals(callbacks)) == 1
    assert (back.action, back.version, back.previous_version) == (ReleaseAction.ROLLBACK, v2, v3)
    assert audit.actions() == ["release.rolled_back"]
    assert audit.events()[0].before["version"] == 3 and audit.events()[0].after["version"] == 2
    again = rollback(program, actor=releaser, reason="v2 too")  # walks back, does not toggle to v3
    assert again.version == v1 and _label(program).version == v1
    assert label_history(program, "production") == [v1.pk]
    with pytest.raises(IllegalTransition, match="nothing to roll back: label 'production' of support has no "
                                                "earlier approved version than version 1"):
        rollback(program, actor=releaser, reason="and again")


def test_rollback_skips_retired_versions(program, make_approved, releaser):
    v1, v2, v3 = make_approved(), make_approved(), make_approved()
    for version in (v1, v2, v3):
        release_version(version, actor=releaser, reason="r")
    # v2 is no longer served by the label, so it may be retired; rollback must then skip it.
    retire_version(v2, actor=releaser, reason="withdrawn from use")
    assert rollback(program, actor=releaser, reason="back").version == v1


def test_rollback_to_given_version(program, make_approved, releaser):
    v1, v2, v3, never = make_approved(), make_approved(), make_approved(), make_approved()
    for version in (v1, v2, v3):
        release_version(version, actor=releaser, reason="r")
    with pytest.raises(IllegalTransition, match="version 4 was never released as 'production'; release it instead"):
        rollback(program, actor=releaser, to_version=never, reason="r")
    with pytest.raises(IllegalTransition, match="version 3 is already the 'production' version"):
        rollback(program, actor=releaser, to_version=v3, reason="r")
    assert rollback(program, actor=releaser, to_version=v1, reason="straight to v1").version == v1
    assert label_history(program, "production") == [v1.pk]


def test_rollback_with_nothing_to_roll_back(program, make_approved, releaser, audit):
    with pytest.raises(IllegalTransition, match="program support has no 'production' label; nothing to roll back"):
        rollback(program, actor=releaser, reason="panic")
    release_version(make_approved(), actor=releaser, reason="only one")
    audit.mark()
    with pytest.raises(IllegalTransition, match="nothing to roll back"):
        rollback(program, actor=releaser, reason="panic")
    with pytest.raises(InvalidInput, match="a reason is required to roll back"):
        rollback(program, actor=releaser, reason="")
    assert audit.actions() == []


def test_fallback_and_kill_switch(program, make_approved, releaser, users, audit):
    v1, v2 = make_approved(), make_approved()
    with pytest.raises(IllegalTransition, match="has no 'production' label; nothing to pin a fallback for"):
        pin_fallback(program, actor=releaser, version=v1, reason="safe")
    release_version(v2, actor=releaser, reason="live")
    audit.mark()
    with pytest.raises(IllegalTransition, match="label 'production' of support has no pinned fallback version; "
                                                "pin one before engaging the kill switch"):
        set_kill_switch(program, actor=releaser, on=True, reason="incident")
    pinned = pin_fallback(program, actor=releaser, version=v1, reason="known good")
    assert (pinned.action, pinned.version, pinned.previous_version) == (ReleaseAction.FALLBACK_PINNED, v1, None)
    with pytest.raises(PermissionDenied, match="user 'reviewer1' needs the releaser role to switch the kill switch"):
        set_kill_switch(program, actor=users["reviewer1"], on=True, reason="incident")
    on = set_kill_switch(program, actor=releaser, on=True, reason="incident 42")
    label = _label(program)
    assert label.kill_switch and label.serving_version == v1
    assert (on.action, on.version, on.previous_version) == (ReleaseAction.KILL_SWITCH_ON, v1, v2)
    with pytest.raises(IllegalTransition, match="the kill switch of label 'production' is already on"):
        set_kill_switch(program, actor=releaser, on=True, reason="again")
    with pytest.raises(IllegalTransition, match="version 1 is the pinned fallback of label 'production'"):
        retire_version(v1, actor=releaser, reason="old")
    off = set_kill_switch(program, actor=releaser, on=False, reason="incident resolved")
    assert (off.action, off.version, off.previous_version) == (ReleaseAction.KILL_SWITCH_OFF, v2, v1)
    assert _label(program).serving_version == v2
    assert audit.actions() == ["release.fallback_pinned", "release.kill_switch_on", "release.kill_switch_off"]
    assert [e.reason for e in audit.events()] == ["known good", "incident 42", "incident resolved"]


def test_fallback_must_be_approved_and_of_the_program(program, make_approved, make_version, releaser, author):
    from governance.actions import create_program
    from tests.governance.conftest import demo_spec
    release_version(make_approved(), actor=releaser, reason="live")
    with pytest.raises(IllegalTransition, match="version 2 is draft; only approved versions can be pinned as "
                                                "fallback"):
        pin_fallback(program, actor=releaser, version=make_version(), reason="r")
    other = create_program(actor=author, slug="other", name="Other", spec=demo_spec())
    with pytest.raises(InvalidInput, match="version 2 belongs to program support, not other"):
        pin_fallback(other, actor=releaser, version=program.versions.get(number=2), reason="r")


def test_release_records_are_append_only_history(program, make_approved, releaser):
    v1, v2 = make_approved(), make_approved()
    release_version(v1, actor=releaser, reason="a")
    release_version(v2, actor=releaser, reason="b")
    rollback(program, actor=releaser, reason="c")
    assert list(Release.objects.order_by("id").values_list("action", "version__number", "previous_version__number",
                                                           "reason")) == [
        ("release", 1, None, "a"), ("release", 2, 1, "b"), ("rollback", 1, 2, "c")]
