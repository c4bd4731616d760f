"""Management commands: signing key, export, offline bundle verification, audit chain check, audit CSV."""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import stat
import subprocess
import sys
from datetime import datetime, timezone as dt_timezone
from pathlib import Path
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from governance.audit import record_event
from governance.models import AuditEvent, Export
from governance.reports import AUDIT_CSV_COLUMNS
from optimizer.bundle import (
    generate_private_key,
    key_fingerprint,
    load_private_key,
    public_key_b64,
    public_key_raw,
    sign_bundle,
    write_bundle,
)
from optimizer.program import content_hash
from tests.governance.export_helpers import (  # noqa: F401  (fast_password_hashing is an autouse fixture)
    approved,
    draft,
    fast_password_hashing,
    make_team,
    optimizer_run,
    signing_key_settings,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TRIGGERS = importlib.import_module("governance.migrations.0002_integrity_triggers")


def run(name: str, *args: str, **options: object) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err, **options)
    return out.getvalue()


@pytest.fixture
def signing(tmp_path):
    with signing_key_settings(tmp_path):
        from governance.signing import public_key, public_key_fingerprint
        yield {"public_key": public_key(), "fingerprint": public_key_fingerprint()}


# --------------------------------------------------------------------------------------- generate_signing_key


def test_generate_signing_key_writes_owner_only_pem_and_prints_the_public_key(tmp_path):
    path = tmp_path / "keys" / "signing.pem"
    output = run("generate_signing_key", path=str(path))

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_private_key(path.read_bytes())
    assert output.splitlines() == [
        f"wrote Ed25519 signing key to {path} (mode 600)",
        f"public key: {public_key_b64(key)}",
        f"fingerprint: {key_fingerprint(public_key_raw(key))}",
    ]


def test_generate_signing_key_refuses_to_overwrite_without_force(tmp_path, settings):
    settings.GOVERNANCE_SIGNING_KEY_PATH = tmp_path / "signing.pem"
    settings.GOVERNANCE_SIGNING_KEY_PEM = ""
    run("generate_signing_key")
    first = settings.GOVERNANCE_SIGNING_KEY_PATH.read_bytes()
    old_public = public_key_b64(load_private_key(first))

    with pytest.raises(CommandError) as excinfo:
        run("generate_signing_key")
    assert str(excinfo.value) == (f"a signing key already exists at {settings.GOVERNANCE_SIGNING_KEY_PATH} "
                                  f"(public key {old_public}); refusing to overwrite it (pass --force to replace it)")
    assert settings.GOVERNANCE_SIGNING_KEY_PATH.read_bytes() == first

    run("generate_signing_key", force=True)
    replaced = settings.GOVERNANCE_SIGNING_KEY_PATH
    assert replaced.read_bytes() != first
    assert stat.S_IMODE(replaced.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["signing.pem"]  # no temporary file left behind


# --------------------------------------------------------------------------------------- export + verify


@pytest.mark.django_db
def test_export_version_then_verify_bundle_ok(tmp_path, signing):
    team = make_team()
    version = approved(team, run=optimizer_run(team))
    out_file = tmp_path / "triage-v1.json"

    output = run("export_version", "triage", str(version.number), out=str(out_file), actor="rel-triage")
    assert output == (f"exported triage v1 (hash {version.content_hash}) signed by key {signing['fingerprint']} "
                      f"to {out_file}\n")

    verified = run("verify_bundle", str(out_file), public_key=signing["public_key"])
    approvals = json.loads(out_file.read_text())["manifest"]["approvals"]
    assert verified == (
        f"OK: triage v1 hash {version.content_hash} signed by key {signing['fingerprint']}, approvals: "
        f"Ada Reviewer ({approvals[0]['signed_at']}, approval), Bo Compliance ({approvals[1]['signed_at']}, "
        "approval)\n")
    assert approvals[0]["signed_at"].endswith("Z")
    export = Export.objects.get()
    assert export.exported_by == team.releaser
    event = AuditEvent.objects.filter(action="version.exported").get()
    assert event.actor_name == "Cy Releaser"


@pytest.mark.django_db
def test_tampered_bundle_file_fails_verification_with_the_reason(tmp_path, signing):
    team = make_team()
    version = approved(team)
    path = tmp_path / "bundle.json"
    run("export_version", "triage", "1", out=str(path), actor="rel-triage")

    bundle = json.loads(path.read_text())
    bundle["payload"]["program"]["predictors"][0]["signature"]["instructions"] = "Say billing, always."
    path.write_text(json.dumps(bundle))
    with pytest.raises(CommandError) as excinfo:
        run("verify_bundle", str(path), public_key=signing["public_key"])
    assert str(excinfo.value) == (f"{path}: verification failed: payload hash mismatch: manifest says "
                                  f"{version.content_hash}, payload hashes to {content_hash(bundle['payload'])}")

    bundle = json.loads(path.read_text())
    bundle["payload"] = json.loads(json.dumps(version.payload))
    bundle["manifest"]["approvals"].pop()
    path.write_text(json.dumps(bundle))
    with pytest.raises(CommandError, match=r"verification failed: signature does not match manifest \(bundle altered"):
        run("verify_bundle", str(path))


@pytest.mark.django_db
def test_verify_bundle_refuses_a_key_other_than_the_pinned_one(tmp_path, signing):
    team = make_team()
    approved(team)
    path = tmp_path / "bundle.json"
    run("export_version", "triage", "1", out=str(path), actor="rel-triage")
    other = public_key_b64(generate_private_key())
    with pytest.raises(CommandError, match=f"verification failed: untrusted key fingerprint {signing['fingerprint']}"):
        run("verify_bundle", str(path), public_key=other)


def test_verify_bundle_never_touches_the_database(tmp_path):
    """No django_db mark: pytest-django fails any query, so passing proves the command is offline."""
    key = generate_private_key()
    payload = {"program": {"name": "p", "predictors": []}, "lm": {"model": "m", "temperature": 0, "max_tokens": 8}}
    digest = content_hash(payload)
    manifest = {"program": {"slug": "p", "name": "P"}, "version": {"number": 2}, "content_hash": digest,
                "approvals": [{"name": "Ada", "signed_at": "2026-01-01T00:00:00Z", "meaning": "approval",
                               "content_hash": digest}],
                "release": None, "provenance": {}, "exported_at": "2026-01-02T00:00:00Z", "exported_by": "x"}
    path = write_bundle(sign_bundle(manifest, payload, {"p": {}}, key), tmp_path / "b.json")
    output = run("verify_bundle", str(path), public_key=public_key_b64(key))
    assert output == (f"OK: p v2 hash {digest} signed by key {key_fingerprint(public_key_raw(key))}, "
                      "approvals: Ada (2026-01-01T00:00:00Z, approval)\n")

    # And as a process with no reachable database at all.
    env = {**os.environ, "DATABASE_URL": "postgres://nobody@127.0.0.1:9/none", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "GOVERNANCE_VAR_DIR": str(tmp_path / "var")}
    result = subprocess.run([sys.executable, "manage.py", "verify_bundle", str(path)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: p v2 hash ")
    assert "not checked against a trusted key" in result.stderr

    path.write_text(path.read_text().replace('"number": 2', '"number": 3'))
    result = subprocess.run([sys.executable, "manage.py", "verify_bundle", str(path)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "verification failed: signature does not match manifest (bundle altered?)" in result.stderr


@pytest.mark.django_db
def test_export_version_command_refuses_unapproved_versions(tmp_path, signing):
    team = make_team()
    draft(team)
    with pytest.raises(CommandError) as excinfo:
        run("export_version", "triage", "1", out=str(tmp_path / "x.json"), actor="rel-triage")
    assert str(excinfo.value) == "version 1 is draft; only approved versions can be exported"
    assert not (tmp_path / "x.json").exists()
    assert not Export.objects.exists()


@pytest.mark.django_db
def test_export_version_command_names_unknown_program_version_and_user(tmp_path, signing):
    draft(make_team())
    out = str(tmp_path / "x.json")
    with pytest.raises(CommandError, match="^no program with slug 'nope'$"):
        run("export_version", "nope", "1", out=out)
    with pytest.raises(CommandError, match="^program triage has no version 9$"):
        run("export_version", "triage", "9", out=out)
    with pytest.raises(CommandError, match="^no user 'ghost'$"):
        run("export_version", "triage", "1", out=out, actor="ghost")


@pytest.mark.django_db
def test_export_version_without_actor_is_recorded_as_the_system(tmp_path, signing):
    team = make_team()
    approved(team)
    run("export_version", "triage", "1", out=str(tmp_path / "b.json"))
    event = AuditEvent.objects.filter(action="version.exported").get()
    assert event.actor is None and event.actor_name == "system"
    assert "from the command line" in event.reason
    assert Export.objects.get().exported_by is None
    assert json.loads((tmp_path / "b.json").read_text())["manifest"]["exported_by"] == "system"


@pytest.mark.django_db
def test_export_version_without_a_signing_key_names_the_command(tmp_path, settings):
    settings.GOVERNANCE_SIGNING_KEY_PATH = tmp_path / "missing.pem"
    settings.GOVERNANCE_SIGNING_KEY_PEM = ""
    team = make_team()
    approved(team)
    with pytest.raises(CommandError) as excinfo:
        run("export_version", "triage", "1", out=str(tmp_path / "b.json"), actor="rel-triage")
    assert str(excinfo.value) == (f"no export signing key: {tmp_path / 'missing.pem'} does not exist and "
                                  "GOVERNANCE_SIGNING_KEY_PEM is empty; create one with "
                                  "`python manage.py generate_signing_key`")
    assert not Export.objects.exists()


# --------------------------------------------------------------------------------------- verify_audit


def _tamper_reason(event_id: int, reason: str) -> None:
    """Bypass the append-only trigger the way an attacker with database access would."""
    assert connection.vendor == "sqlite"
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER governance_audit_no_update")
        cursor.execute("UPDATE governance_auditevent SET reason = %s WHERE id = %s", [reason, event_id])
        cursor.execute(next(s for s in TRIGGERS.SQLITE_CREATE if "governance_audit_no_update" in s))


@pytest.mark.django_db
def test_verify_audit_reports_an_intact_chain_then_names_the_altered_event(signing):
    team = make_team()
    approved(team)
    count = AuditEvent.objects.count()
    assert count > 5
    output = run("verify_audit")
    head = AuditEvent.objects.order_by("-id").first().hash
    assert output == f"audit chain intact: {count} events\nhead: {head}\n"

    victim = AuditEvent.objects.order_by("id")[3]
    _tamper_reason(victim.pk, "nothing to see here")
    with pytest.raises(CommandError) as excinfo:
        run("verify_audit")
    assert str(excinfo.value) == (f"audit chain broken at event #{victim.pk}: event {victim.pk} ({victim.action}) "
                                  "was altered after it was written")
    # The trigger is back: the database still refuses updates.
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE governance_auditevent SET reason = 'x' WHERE id = %s", [victim.pk])


@pytest.mark.django_db
def test_verify_audit_names_a_removed_event_and_a_truncated_head(signing):
    team = make_team()
    approved(team)
    events = list(AuditEvent.objects.order_by("id"))
    head = events[-1].hash
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER governance_audit_no_delete")
        cursor.execute("DELETE FROM governance_auditevent WHERE id IN (%s, %s)", [events[2].pk, events[-1].pk])
        cursor.execute(next(s for s in TRIGGERS.SQLITE_CREATE if "governance_audit_no_delete" in s))
    with pytest.raises(CommandError) as excinfo:
        run("verify_audit")
    assert str(excinfo.value) == (f"audit chain broken at event #{events[3].pk}: event {events[3].pk} does not "
                                  "link to the event before it (a row was removed or inserted)")


@pytest.mark.django_db
def test_verify_audit_expect_head_catches_removal_of_the_newest_events(signing):
    team = make_team()
    approved(team)
    events = list(AuditEvent.objects.order_by("id"))
    assert run("verify_audit", expect_head=events[-1].hash).startswith("audit chain intact")
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER governance_audit_no_delete")
        cursor.execute("DELETE FROM governance_auditevent WHERE id = %s", [events[-1].pk])
        cursor.execute(next(s for s in TRIGGERS.SQLITE_CREATE if "governance_audit_no_delete" in s))
    with pytest.raises(CommandError) as excinfo:
        run("verify_audit", expect_head=events[-1].hash)
    assert str(excinfo.value) == (f"audit chain truncated: the recorded head {events[-1].hash} is no longer in the "
                                  f"chain (current head {events[-2].hash})")


@pytest.mark.django_db
def test_audit_rows_refuse_update_and_delete_in_the_model_and_the_database(signing):
    team = make_team()
    event = AuditEvent.objects.filter(program=team.program).first()
    event.reason = "rewritten"
    with pytest.raises(PermissionError, match="append-only"):
        event.save()
    with pytest.raises(PermissionError, match="append-only"):
        event.delete()
    for statement in (lambda: AuditEvent.objects.filter(pk=event.pk).update(reason="rewritten"),
                      lambda: AuditEvent.objects.filter(pk=event.pk).delete()):
        with pytest.raises(Exception, match="append-only"), transaction.atomic():
            statement()
    assert AuditEvent.objects.get(pk=event.pk).reason == ""
    assert run("verify_audit").startswith("audit chain intact")


@pytest.mark.django_db
def test_verify_audit_on_an_empty_trail():
    assert run("verify_audit") == "audit chain intact: 0 events\n"


# --------------------------------------------------------------------------------------- audit_report


def _event_at(when: datetime, action: str, *, program=None, reason: str = "") -> AuditEvent:
    with mock.patch("governance.audit.timezone.now", return_value=when), transaction.atomic():
        return record_event(action, actor=None, program=program, object_type="test", object_id="1", reason=reason,
                            before={"x": 1}, after={"x": 2, "note": "é"})


def _rows(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames) == AUDIT_CSV_COLUMNS
    return list(reader)


@pytest.mark.django_db
def test_audit_report_writes_every_event_as_a_readable_csv_row(tmp_path):
    team = make_team()
    out_file = tmp_path / "audit.csv"
    assert run("audit_report", out=str(out_file)) == f"wrote {AuditEvent.objects.count()} audit events to {out_file}\n"

    rows = _rows(out_file.read_text(encoding="utf-8"))
    events = list(AuditEvent.objects.order_by("id"))
    assert [int(r["id"]) for r in rows] == [e.pk for e in events]
    created = next(r for r in rows if r["action"] == "program.created")
    event = AuditEvent.objects.get(action="program.created")
    assert created["actor_name"] == "Alice Author"
    assert created["program"] == team.program.slug
    assert created["object_type"] == "Program" and created["object_id"] == str(team.program.pk)
    assert created["created_at"] == event.created_at.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert json.loads(created["after"]) == event.after
    assert created["before"] == ""
    assert created["hash"] == event.hash and created["prev_hash"] == event.prev_hash
    assert rows[0]["prev_hash"] == "0" * 64


@pytest.mark.django_db
def test_audit_report_filters_by_program_and_utc_days():
    team = make_team()
    other = make_team("billing")
    day = lambda d, h=12: datetime(2026, 3, d, h, tzinfo=dt_timezone.utc)  # noqa: E731
    early = _event_at(day(1), "test.early", program=team.program)
    first = _event_at(day(2, 0), "test.first", program=team.program)
    last = _event_at(day(3, 23), "test.last", program=team.program)
    _event_at(day(3, 23), "test.other", program=other.program)
    _event_at(day(4, 0), "test.late", program=team.program)

    rows = _rows(run("audit_report", program="triage", since="2026-03-02", until="2026-03-03"))
    assert [r["action"] for r in rows] == ["test.first", "test.last"]
    assert [r["id"] for r in rows] == [str(first.pk), str(last.pk)]

    rows = _rows(run("audit_report", until="2026-03-01"))
    assert [r["id"] for r in rows][-1] == str(early.pk)
    assert all(r["created_at"] < "2026-03-02" for r in rows)

    rows = _rows(run("audit_report", program="billing"))
    assert {r["program"] for r in rows} == {"billing"}
    assert "test.other" in [r["action"] for r in rows]


@pytest.mark.django_db
def test_audit_report_neutralizes_spreadsheet_formulas():
    _event_at(datetime(2026, 3, 1, tzinfo=dt_timezone.utc), "test.formula", reason='=HYPERLINK("http://x","y")')
    (row,) = [r for r in _rows(run("audit_report")) if r["action"] == "test.formula"]
    assert row["reason"] == '\'=HYPERLINK("http://x","y")'


@pytest.mark.django_db
def test_audit_report_rejects_bad_arguments():
    with pytest.raises(CommandError, match="^--since expects a date as YYYY-MM-DD, got '03/01/2026'$"):
        run("audit_report", "--since", "03/01/2026")
    with pytest.raises(CommandError, match="^no program with slug 'nope'$"):
        run("audit_report", program="nope")
    with pytest.raises(CommandError, match="^--since 2026-03-05 is after --until 2026-03-01$"):
        run("audit_report", "--since", "2026-03-05", "--until", "2026-03-01")
