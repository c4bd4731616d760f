"""Signed export and audit-chain verification on PostgreSQL (run by tests/test_postgresql.py)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from governance.actions.exports import export_version
from governance.audit import verify_chain
from governance.errors import IllegalTransition
from governance.models import AuditEvent, Export
from governance.signing import public_key
from optimizer.bundle import verify_bundle
from tests.governance.export_helpers import (  # noqa: F401  (fast_password_hashing is an autouse fixture)
    approved,
    draft,
    fast_password_hashing,
    make_team,
    optimizer_run,
    signing_key_settings,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def signing(tmp_path):
    with signing_key_settings(tmp_path):
        yield


def test_runs_on_postgresql():
    assert connection.vendor == "postgresql"


def test_export_and_offline_verify_on_postgresql(tmp_path):
    team = make_team()
    version = approved(team, run=optimizer_run(team))
    with pytest.raises(IllegalTransition, match="^version 2 is draft; only approved versions can be exported$"):
        export_version(draft(team), actor=team.releaser)

    path = tmp_path / "bundle.json"
    out = io.StringIO()
    call_command("export_version", "triage", str(version.number), out=str(path), actor="rel-triage", stdout=out)
    bundle = json.loads(path.read_text())

    verified = verify_bundle(bundle, trusted_public_key=public_key())
    assert verified.payload == version.payload
    cr = version.change_requests.get()  # evaluated by the system on the program's test rows before approval
    evidence = verified.manifest["evaluation"]
    assert evidence["candidate"]["id"] == cr.candidate_evaluation_id and evidence["candidate"]["status"] == "succeeded"
    assert evidence["candidate"]["content_hash"] == version.content_hash
    assert evidence["baseline"]["dataset_hash"] == cr.eval_dataset.content_hash
    assert verified.manifest["provenance"]["scores"] == {"test": cr.candidate_evaluation.score}
    assert [a["name"] for a in verified.approvals] == ["Ada Reviewer", "Bo Compliance"]
    assert Export.objects.get().manifest_hash
    assert AuditEvent.objects.filter(action="version.exported", object_id=str(version.pk)).count() == 1
    assert verify_chain() is None  # JSON and timestamps survive the PostgreSQL round trip unchanged

    out = io.StringIO()
    call_command("verify_bundle", str(path), public_key=public_key(), stdout=out)
    assert out.getvalue().startswith(f"OK: triage v{version.number} hash {version.content_hash}")


def test_verify_audit_names_an_event_altered_behind_the_trigger():
    team = make_team()
    approved(team)
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().startswith(f"audit chain intact: {AuditEvent.objects.count()} events")

    victim = AuditEvent.objects.order_by("id")[2]
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE refuses to run with deferred checks pending
        cursor.execute("ALTER TABLE governance_auditevent DISABLE TRIGGER governance_audit_append_only")
        cursor.execute("UPDATE governance_auditevent SET after = %s WHERE id = %s", ['{"forged": true}', victim.pk])
        cursor.execute("ALTER TABLE governance_auditevent ENABLE TRIGGER governance_audit_append_only")
    with pytest.raises(CommandError) as excinfo:
        call_command("verify_audit")
    assert str(excinfo.value) == (f"audit chain broken at event #{victim.pk}: event {victim.pk} ({victim.action}) "
                                  "was altered after it was written")
