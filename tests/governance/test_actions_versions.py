"""Prompt versions: creation and numbering, payload validation, draft edits, withdrawal and retirement."""

from __future__ import annotations

import copy

import pytest

from governance.actions import (
    create_version,
    edit_version,
    initial_payload,
    release_version,
    retire_version,
    submit_for_review,
    withdraw_version,
)
from governance.actions.versions import can_edit
from governance.errors import FrozenVersionError, IllegalTransition, InvalidInput, PermissionDenied
from governance.models import ChangeRequestStatus, PromptVersion, VersionOrigin, VersionStatus, payload_hash
from tests.governance.conftest import payload_with

pytestmark = pytest.mark.django_db


def test_initial_payload_is_the_spec_and_default_lm(program):
    payload = initial_payload(program)
    assert payload == {"program": program.spec,
                       "lm": {"model": program.lm_config["model"], "temperature": 0.0, "max_tokens": 256}}


def test_create_version_numbers_monotonically_and_audits(program, author, users, audit):
    first = create_version(program, actor=author, payload=initial_payload(program), note="baseline")
    second = create_version(program, actor=users["author2"], payload=payload_with(program, "Be precise."),
                            parent=first)
    assert (first.number, second.number) == (1, 2)
    assert first.status == VersionStatus.DRAFT and first.origin == VersionOrigin.MANUAL
    assert second.content_hash == payload_hash(second.payload) != first.content_hash
    assert second.scores == {} and second.parent == first
    assert audit.actions() == ["version.created", "version.created"]
    event = audit.events()[1]
    assert event.after["number"] == 2 and event.after["content_hash"] == second.content_hash
    assert event.after["payload"] == second.payload and event.actor == users["author2"]


def test_create_version_checks_role_and_membership(program, users, audit):
    with pytest.raises(PermissionDenied, match="user 'reviewer1' needs the author role to create prompt versions"):
        create_version(program, actor=users["reviewer1"], payload=initial_payload(program))
    with pytest.raises(PermissionDenied, match="user 'outsider' is not a member of program support"):
        create_version(program, actor=users["outsider"], payload=initial_payload(program))
    assert audit.actions() == [] and not PromptVersion.objects.exists()


def _with(program, mutate):
    payload = copy.deepcopy(initial_payload(program))
    mutate(payload)
    return payload


@pytest.mark.parametrize(("mutate", "fragment"), [
    (lambda p: p.pop("lm"), 'exactly the keys "program" and "lm"'),
    (lambda p: p["program"]["predictors"][0].update(name="route"),
     ("must keep the predictors and fields of support, including types and choices "
      r"\(expected classify\(ticket -> category\), got route\(ticket -> category\)\)")),
    (lambda p: p["program"]["predictors"][0]["signature"]["outputs"][0]["choices"].pop(),
     "must keep the predictors and fields of support"),
    (lambda p: p["program"]["predictors"][0].update(kind="magic"), "unknown kind 'magic'"),
    (lambda p: p["lm"].pop("model"), r"missing \['model'\]"),
    (lambda p: p["lm"].update(api_base="http://x"), r"unknown \['api_base'\]"),
    (lambda p: p["lm"].update(temperature=-1), "temperature must be a number >= 0"),
    (lambda p: p["lm"].update(max_tokens=0), "max_tokens must be an integer >= 1"),
])
def test_create_version_validates_payload(program, author, audit, mutate, fragment):
    with pytest.raises(InvalidInput, match=fragment) as info:
        create_version(program, actor=author, payload=_with(program, mutate))
    assert info.value.field == "payload"
    assert audit.actions() == []


def test_create_version_refuses_author_typed_scores_and_validates_origin(program, author, audit):
    with pytest.raises(InvalidInput, match="^scores come only from the system's evaluations; a version cannot "
                                           "carry scores its author sends$") as info:
        create_version(program, actor=author, payload=initial_payload(program), scores={"test": 0.99})
    assert info.value.field == "scores" and audit.actions() == []
    with pytest.raises(InvalidInput, match="origin must be one of manual, optimizer, dspy_import"):
        create_version(program, actor=author, payload=initial_payload(program), origin="magic")


def test_payload_is_normalized_before_hashing(program, author):
    payload = initial_payload(program)
    payload["program"]["predictors"][0]["signature"]["outputs"][0].pop("prefix", None)
    version = create_version(program, actor=author, payload=payload)
    assert version.payload["program"]["predictors"][0]["signature"]["outputs"][0]["prefix"]  # filled in


def test_edit_draft_changes_hash_and_audits_before_after(make_version, author, audit):
    version = make_version(instructions="Old instructions.")
    old_hash = version.content_hash
    audit.mark()
    edited = edit_version(version, actor=author, payload=payload_with(version.program, "New instructions."),
                          reason="clearer wording")
    assert edited.content_hash != old_hash
    assert audit.actions() == ["version.edited"]
    event = audit.events()[0]
    assert (event.before["content_hash"], event.after["content_hash"]) == (old_hash, edited.content_hash)
    assert event.reason == "clearer wording"
    with pytest.raises(InvalidInput, match=f"nothing to change on version {version.number}"):
        edit_version(edited, actor=author, payload=payload_with(version.program, "New instructions."))


def test_only_the_author_edits_and_only_drafts(make_cr, users, author, audit):
    cr = make_cr()
    with pytest.raises(PermissionDenied, match=r"only the author of version 1 \(author\) may edit it"):
        edit_version(cr.version, actor=users["author2"], note="mine now")
    with pytest.raises(IllegalTransition, match="version 1 is in_review; only draft versions can be edited"):
        edit_version(cr.version, actor=author, note="sneaky")
    assert not can_edit(cr.version, author)


def test_approved_version_cannot_be_edited(make_approved, author, audit):
    version = make_approved()
    audit.mark()
    with pytest.raises(FrozenVersionError, match="version 1 is approved; only draft versions can be edited "
                                                 r"\(create a new version instead\)"):
        edit_version(version, actor=author, payload=payload_with(version.program, "Changed after approval."))
    assert audit.actions() == []


def test_submit_for_review_opens_then_resubmits(make_version, author, reviewer1):
    from governance.actions import request_changes
    version = make_version()
    cr = submit_for_review(version, actor=author, title="first look")
    assert cr.status == ChangeRequestStatus.OPEN and cr.title == "first look"
    request_changes(cr, actor=reviewer1, reason="tighten the wording", content_hash=version.content_hash)
    again = submit_for_review(version, actor=author)
    assert again.pk == cr.pk and again.status == ChangeRequestStatus.OPEN


def test_withdraw_version_closes_its_change_request(make_cr, author, users, audit):
    cr = make_cr()
    audit.mark()
    with pytest.raises(InvalidInput, match="a reason is required to withdraw a version"):
        withdraw_version(cr.version, actor=author, reason=" ")
    with pytest.raises(PermissionDenied, match=r"only the author of version 1 \(author\) may withdraw it"):
        withdraw_version(cr.version, actor=users["author2"], reason="not mine")
    version = withdraw_version(cr.version, actor=author, reason="superseded")
    cr.refresh_from_db()
    assert version.status == VersionStatus.WITHDRAWN and cr.status == ChangeRequestStatus.WITHDRAWN
    assert audit.actions() == ["change_request.withdrawn", "version.withdrawn"]
    with pytest.raises(IllegalTransition, match="version 1 is withdrawn; only draft or in_review versions can be "
                                                "withdrawn"):
        withdraw_version(version, actor=author, reason="again")


def test_retire_approved_version(make_approved, releaser, users, audit):
    old = make_approved()
    new = make_approved()
    release_version(old, actor=releaser, reason="first release")
    audit.mark()
    with pytest.raises(IllegalTransition, match="version 1 is the current version of label 'production'; "
                                                "move the label first"):
        retire_version(old, actor=releaser, reason="old")
    with pytest.raises(PermissionDenied, match="user 'author' needs the releaser role to retire versions"):
        retire_version(new, actor=users["author"], reason="old")
    release_version(new, actor=releaser, reason="second release")
    audit.mark()
    retired = retire_version(old, actor=releaser, reason="replaced by v2")
    assert retired.status == VersionStatus.RETIRED
    assert audit.actions() == ["version.retired"]
    assert audit.events()[0].before["status"] == "approved" and audit.events()[0].after["status"] == "retired"
    with pytest.raises(IllegalTransition, match="version 1 is retired; only approved versions can be retired"):
        retire_version(retired, actor=releaser, reason="again")


def test_draft_cannot_be_retired(make_version, releaser):
    with pytest.raises(IllegalTransition, match="version 1 is draft; only approved versions can be retired"):
        retire_version(make_version(), actor=releaser, reason="never used")
