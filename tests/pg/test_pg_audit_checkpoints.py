"""Audit seals and checkpoints on PostgreSQL (run by tests/test_postgresql.py): a TRUNCATE by someone who
lifted the triggers is reported as truncation, checkpoint rows refuse UPDATE, DELETE and TRUNCATE, and a
checkpoint's statement survives the PostgreSQL round trip (its signature still verifies)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from governance.actions import create_program, create_user_with_roles, create_version, setup_role_groups
from governance.audit import Statement, write_checkpoint
from governance.models import AuditCheckpoint, AuditEvent, Program
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


def _program() -> Program:
    setup_role_groups()
    author = create_user_with_roles(actor=None, username="author", password="author-secret-pass", roles=["author"])
    return create_program(actor=author, slug="support", name="Support triage", spec=demo_spec())


def _new_version(program: Program, text: str) -> None:
    create_version(program, actor=program.owner, payload=payload_with(program, text))


@pytest.fixture
def checkpoint() -> AuditCheckpoint:
    """A program and three versions written through the actions, then a checkpoint of the chain."""
    program = _program()
    for number in range(3):
        _new_version(program, f"Classify ({number}).")
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


def _together(workers: list[Callable[[], Any]]) -> list[Any]:
    """Each worker on its own thread and database connection, started at the same moment."""
    barrier, results = threading.Barrier(len(workers)), [None] * len(workers)

    def run(index: int, work: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = work()
        except Exception as exc:  # noqa: BLE001  (collected and asserted by the test)
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_and_checkpoints_keep_one_consistent_record(settings, tmp_path, monkeypatch):
    """Events committed by two writers (each commit may checkpoint automatically) while two more processes ask
    for checkpoints: the checkpoint lock keeps rows and anchor lines one-to-one, in order, and all verify."""
    settings.GOVERNANCE_AUDIT_CHECKPOINT_EVERY = 2
    monkeypatch.setattr("governance.audit._retry_after", 0)
    program = _program()

    def writer(name: str) -> Callable[[], None]:
        return lambda: [_new_version(program, f"{name} {n}") for n in range(4)]

    def checkpointer() -> None:
        for _ in range(4):
            write_checkpoint(origin="command")

    results = _together([writer("a"), writer("b"), checkpointer, checkpointer])
    assert all(result is None or isinstance(result, list) for result in results), results
    rows = [Statement.from_row(row) for row in AuditCheckpoint.objects.order_by("id")]
    anchored = [Statement.from_json(json.loads(line))
                for line in (tmp_path / "audit_anchor.jsonl").read_text().splitlines()]
    assert len(rows) >= 2 and anchored == rows
    assert [s.last_event_id for s in rows] == sorted({s.last_event_id for s in rows})
    assert verify()[0] == 0
