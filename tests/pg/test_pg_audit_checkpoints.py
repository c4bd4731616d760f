"""Audit seals and checkpoints on PostgreSQL (run by tests/test_postgresql.py): a TRUNCATE by someone who
lifted the triggers is reported as truncation, checkpoint rows refuse UPDATE, DELETE and TRUNCATE, and a
checkpoint's statement survives the PostgreSQL round trip (its signature still verifies)."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from governance.actions import create_program, create_user_with_roles, create_version, setup_role_groups
from governance.models import AuditCheckpoint, AuditEvent
from optimizer.bundle import generate_private_key, private_key_pem
from tests.governance.conftest import demo_spec, payload_with

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def keys(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    key_path = tmp_path / "signing_key.pem"
    key_path.write_bytes(private_key_pem(generate_private_key()))
    settings.GOVERNANCE_SIGNING_KEY_PATH, settings.GOVERNANCE_SIGNING_KEY_PEM = key_path, ""
    settings.GOVERNANCE_AUDIT_ANCHOR_PATH = str(tmp_path / "audit_anchor.jsonl")


@pytest.fixture
def checkpoint() -> AuditCheckpoint:
    """A program and three versions written through the actions, then a checkpoint of the chain."""
    setup_role_groups()
    author = create_user_with_roles(actor=None, username="author", password="author-secret-pass", roles=["author"])
    program = create_program(actor=author, slug="support", name="Support triage", spec=demo_spec())
    for number in range(3):
        create_version(program, actor=author, payload=payload_with(program, f"Classify ({number})."))
    call_command("audit_checkpoint", stdout=io.StringIO())
    return AuditCheckpoint.objects.get()


def verify() -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue()


def test_an_intact_chain_passes_against_its_checkpoint(checkpoint):
    code, output = verify()
    assert code == 0
    assert f"checkpoint: {checkpoint.event_count} events up to event #{checkpoint.last_event_id}" in output
    assert checkpoint.event_count == AuditEvent.objects.count() > 5


def test_truncate_with_the_triggers_lifted_is_reported_as_truncation(checkpoint):
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE refuses to run with deferred checks pending
        cursor.execute("ALTER TABLE governance_auditevent DISABLE TRIGGER USER")  # what an insider with DDL does
        cursor.execute("TRUNCATE governance_auditevent")
        cursor.execute("ALTER TABLE governance_auditevent ENABLE TRIGGER USER")
    assert AuditEvent.objects.count() == 0
    code, message = verify()
    assert code == 3 and message.startswith(f"audit trail truncated: a checkpoint recorded {checkpoint.event_count} "
                                            f"events up to event #{checkpoint.last_event_id} at ")
    assert message.endswith(f"; the database holds 0 events up to that point and event #{checkpoint.last_event_id} "
                            f"is gone (the anchor file's latest checkpoint)")


@pytest.mark.parametrize("statement", ["UPDATE governance_auditcheckpoint SET event_count = 1",
                                       "DELETE FROM governance_auditcheckpoint",
                                       "TRUNCATE governance_auditcheckpoint"])
def test_checkpoint_rows_refuse_change_on_postgresql(checkpoint, statement):
    with pytest.raises(DatabaseError, match="audit checkpoints are append-only"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute(statement)
    assert AuditCheckpoint.objects.get().event_count == checkpoint.event_count
