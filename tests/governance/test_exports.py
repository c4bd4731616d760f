"""Signed exports: only approved versions, by program members, each an Export row and an audit event."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from governance.actions.exports import export_label, export_version
from governance.actions.releases import pin_fallback, release_version, set_kill_switch
from governance.actions.reviews import reject_change_request
from governance.actions.versions import retire_version
from governance.audit import verify_chain
from governance.errors import IllegalTransition, NotFound, PermissionDenied
from governance.models import AuditEvent, Export, Review
from governance.signing import public_key, public_key_fingerprint
from optimizer.bundle import private_key_pem, generate_private_key, public_key_b64, verify_bundle
from optimizer.dspy_compat import from_dspy_state, to_dspy_state
from optimizer.program import Program, content_hash
from tests.governance.export_helpers import (  # noqa: F401  (fast_password_hashing is an autouse fixture)
    PASSWORD,
    approved,
    draft,
    fast_password_hashing,
    in_review,
    make_team,
    optimizer_run,
    release,
    signing_key_settings,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def signing(tmp_path):
    with signing_key_settings(tmp_path):
        yield


@pytest.fixture
def team():
    return make_team()


def test_export_of_an_approved_version_verifies_with_the_public_key_alone(team):
    run = optimizer_run(team, seed=11)
    version = approved(team, run=run)

    bundle = export_version(version, actor=team.releaser)
    verified = verify_bundle(json.loads(json.dumps(bundle)), trusted_public_key=public_key())

    manifest = verified.manifest
    assert verified.key_fingerprint == public_key_fingerprint()
    assert verified.payload == version.payload
    assert manifest["content_hash"] == version.content_hash == content_hash(version.payload)
    assert manifest["program"] == {"slug": "triage", "name": "Ticket triage"}
    assert manifest["version"]["number"] == version.number
    assert manifest["version"]["status"] == "approved"
    assert manifest["version"]["author"] == "Alice Author"
    assert manifest["release"] is None
    assert manifest["exported_by"] == "Cy Releaser"
    assert manifest["exported_at"].endswith("Z")


def test_manifest_shows_each_signature_with_printed_name_utc_time_and_meaning(team):
    version = approved(team)
    reviews = list(Review.objects.filter(version=version, decision="approve").order_by("signed_at"))

    approvals = export_version(version, actor=team.releaser)["manifest"]["approvals"]

    assert [a["name"] for a in approvals] == ["Ada Reviewer", "Bo Compliance"]
    for approval, review in zip(approvals, reviews, strict=True):
        assert approval["signed_at"] == review.signed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert approval["meaning"] == "approval"
        assert approval["statement"] == "I approve this prompt version for release"
        assert approval["content_hash"] == version.content_hash  # each signature is bound to this content
        assert approval["auth_method"] == "password"


def test_manifest_carries_optimizer_provenance_without_secrets(team):
    run = optimizer_run(team, seed=11)
    version = approved(team, run=run)
    cr = version.change_requests.get()

    bundle = export_version(version, actor=team.releaser)

    assert bundle["manifest"]["provenance"] == {
        "origin": "optimizer", "run_id": run.pk, "seed": 11, "preset": "light",
        "dataset_hashes": {"train": "a" * 64, "val": "b" * 64, "test": "c" * 64}, "study_name": "triage-study-1",
        "metric": "choice", "scores": {"test": cr.candidate_evaluation.score}, "model": "local/gemma-3-270m",
        "proposal_model": "local/gemma-3-270m"}
    assert "sk-must-not-leak" not in json.dumps(bundle)


def test_manifest_scores_are_the_systems_evaluations_of_the_approval(team):
    version = approved(team)
    cr = version.change_requests.get()

    evidence = export_version(version, actor=team.releaser)["manifest"]["evaluation"]

    assert evidence["change_request"] == cr.pk
    assert evidence["candidate"]["id"] == cr.candidate_evaluation_id
    assert evidence["candidate"]["content_hash"] == version.content_hash
    assert evidence["candidate"]["dataset_hash"] == evidence["baseline"]["dataset_hash"] == cr.eval_dataset.content_hash
    assert evidence["candidate"]["examples"] == 6 and evidence["candidate"]["status"] == "succeeded"
    assert evidence["comparison"]["examples"] == 6 and 0 <= evidence["comparison"]["p_value"] <= 1


def test_bundle_dspy_state_is_the_approved_program(team):
    version = approved(team)
    bundle = export_version(version, actor=team.releaser)

    program = Program.from_dict(version.payload["program"])
    assert bundle["dspy_state"] == json.loads(json.dumps(to_dspy_state(program)))
    assert from_dspy_state(bundle["dspy_state"], program) == program


def test_export_writes_an_export_row_and_an_audit_event(team):
    version = approved(team)
    before = AuditEvent.objects.count()

    bundle = export_version(version, actor=team.releaser)

    export = Export.objects.get()
    assert export.version == version
    assert export.exported_by == team.releaser
    assert export.label == ""
    assert export.signature == bundle["signature"]["value"]
    assert export.public_key_fingerprint == public_key_fingerprint()
    assert export.manifest_hash == content_hash(bundle["manifest"])
    assert AuditEvent.objects.count() == before + 1
    event = AuditEvent.objects.latest("id")
    assert (event.action, event.object_type, event.object_id) == ("version.exported", "PromptVersion",
                                                                   str(version.pk))
    assert event.actor == team.releaser and event.program == team.program
    assert event.after == {"export_id": export.pk, "version": version.number, "label": None,
                           "content_hash": version.content_hash, "manifest_hash": export.manifest_hash,
                           "key_fingerprint": export.public_key_fingerprint,
                           "approvals": ["Ada Reviewer", "Bo Compliance"]}
    assert event.reason == f"signed export of version {version.number}"
    assert verify_chain() is None


@pytest.mark.parametrize("state", ["draft", "in_review"])
def test_versions_that_are_not_approved_cannot_be_exported(team, state):
    version = draft(team) if state == "draft" else in_review(team)
    events = AuditEvent.objects.count()
    with pytest.raises(IllegalTransition) as excinfo:
        export_version(version, actor=team.releaser)
    assert str(excinfo.value) == f"version {version.number} is {state}; only approved versions can be exported"
    assert excinfo.value.http_status == 409
    assert not Export.objects.exists()
    assert AuditEvent.objects.count() == events


def test_rejected_and_retired_versions_cannot_be_exported(team):
    rejected = in_review(team, instructions="Guess.")
    reject_change_request(rejected.change_requests.get(), actor=team.reviewer1, reason="worse on test",
                          password=PASSWORD, content_hash=rejected.content_hash)
    retired = approved(team)
    retire_version(retired, actor=team.releaser, reason="superseded")

    for version, status in ((rejected, "rejected"), (retired, "retired")):
        with pytest.raises(IllegalTransition, match=f"^version {version.number} is {status}; only approved"):
            export_version(version, actor=team.releaser)
    assert not Export.objects.exists()


def test_stale_in_memory_status_does_not_let_an_unapproved_version_through(team):
    """The action re-reads the row: a caller's copy claiming 'approved' is not trusted."""
    version = in_review(team)
    version.status = "approved"
    with pytest.raises(IllegalTransition, match="is in_review; only approved versions can be exported"):
        export_version(version, actor=team.releaser)


def test_only_program_members_may_export(team):
    version = approved(team)
    with pytest.raises(PermissionDenied) as excinfo:
        export_version(version, actor=team.outsider)
    assert str(excinfo.value) == "user 'out-triage' is not a member of program triage"
    assert not Export.objects.exists()
    assert not AuditEvent.objects.filter(action="version.exported").exists()


def test_export_label_exports_the_serving_version_and_the_fallback_under_the_kill_switch(team):
    first = approved(team, instructions="First wording.")
    second = approved(team, instructions="Second wording.")
    release(team, first)
    release(team, second)

    bundle = export_label(team.program, "production", actor=team.releaser)
    assert bundle["manifest"]["version"]["number"] == second.number
    assert bundle["manifest"]["release"] == {"label": "production", "kill_switch": False, "serving": "release"}

    pin_fallback(team.program, actor=team.releaser, version=first, reason="known good")
    set_kill_switch(team.program, actor=team.releaser, on=True, reason="incident 42")
    bundle = export_label(team.program, "production", actor=team.releaser)
    assert bundle["manifest"]["version"]["number"] == first.number
    assert bundle["manifest"]["content_hash"] == first.content_hash
    assert bundle["manifest"]["release"] == {"label": "production", "kill_switch": True, "serving": "fallback"}
    verify_bundle(bundle, trusted_public_key=public_key())

    assert list(Export.objects.order_by("id").values_list("version__number", "label")) == [
        (second.number, "production"), (first.number, "production")]


def test_a_version_cannot_claim_a_label_that_does_not_serve_it(team):
    first = approved(team)
    second = approved(team, instructions="Second wording.")
    release_version(first, actor=team.releaser, label="production", reason="ship")

    with pytest.raises(IllegalTransition) as excinfo:
        export_version(second, actor=team.releaser, label="production")
    assert str(excinfo.value) == (f"label production of triage serves version {first.number}, not version "
                                  f"{second.number}; export version {second.number} without a label")
    with pytest.raises(NotFound, match="^program triage has no release label 'staging'$"):
        export_version(first, actor=team.releaser, label="staging")
    assert export_version(first, actor=team.releaser, label="production")["manifest"]["release"]["label"] == \
        "production"


def test_export_label_of_an_unknown_label_is_not_found(team):
    with pytest.raises(NotFound, match="^program triage has no release label 'production'$"):
        export_label(team.program, "production", actor=team.releaser)


def test_missing_signing_key_names_the_command_and_records_nothing(team, settings, tmp_path):
    version = approved(team)
    settings.GOVERNANCE_SIGNING_KEY_PATH = tmp_path / "absent.pem"
    with pytest.raises(ImproperlyConfigured, match="create one with `python manage.py generate_signing_key`"):
        export_version(version, actor=team.releaser)
    assert not Export.objects.exists()
    assert not AuditEvent.objects.filter(action="version.exported").exists()


def test_signing_key_from_the_pem_setting_wins_over_the_file(team, settings):
    key = generate_private_key()
    settings.GOVERNANCE_SIGNING_KEY_PEM = private_key_pem(key).decode()
    bundle = export_version(approved(team), actor=team.releaser)
    assert bundle["signature"]["public_key"] == public_key_b64(key)
    verify_bundle(bundle, trusted_public_key=public_key_b64(key))

    settings.GOVERNANCE_SIGNING_KEY_PEM = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ImproperlyConfigured, match="^GOVERNANCE_SIGNING_KEY_PEM: signing key is not a readable"):
        public_key()
