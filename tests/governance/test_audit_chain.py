"""The audit trail: every action's events are hash-chained, and the database refuses to change them."""

from __future__ import annotations

import itertools

import pytest
from django.db import DatabaseError, connection, transaction

from governance.audit import compute_hash, event_content, record_event, verify_chain
from governance.models import GENESIS_HASH, AuditEvent
from tests.governance.conftest import TRIGGERS

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(make_approved, releaser):
    """A realistic trail: users, a program, versions, reviews, an approval and a release."""
    from governance.actions import release_version
    release_version(make_approved(), actor=releaser, reason="go live")
    return list(AuditEvent.objects.order_by("id"))


def test_events_link_each_to_the_previous(trail):
    assert len(trail) > 15
    assert trail[0].prev_hash == GENESIS_HASH
    for previous, event in itertools.pairwise(trail):
        assert event.prev_hash == previous.hash
        assert event.hash == compute_hash(previous.hash, event_content(event))
    assert verify_chain() is None


def test_record_event_needs_an_atomic_block(committed_db):
    """Outside an action's transaction an event could be half of a change; record_event refuses."""
    assert not connection.in_atomic_block
    with pytest.raises(RuntimeError, match="record_event must run inside transaction.atomic"):
        record_event("test.outside", actor=None)
    assert not AuditEvent.objects.exists()


def _sqlite_trigger(name: str) -> str:
    return next(statement for statement in TRIGGERS.SQLITE_CREATE if name in statement)


def _behind_the_trigger(name: str, sql: str, params: list) -> None:
    """What an attacker with database access could do: lift the trigger, change a row, put the trigger back."""
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite variant; tests/pg covers PostgreSQL")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER {name}")
        cursor.execute(sql, params)
        cursor.execute(_sqlite_trigger(name))


def test_verify_chain_names_an_altered_event(trail):
    target = trail[5]
    _behind_the_trigger("governance_audit_no_update", "UPDATE governance_auditevent SET reason = %s WHERE id = %s",
                        ["nothing to see here", target.pk])
    broken = verify_chain()
    assert broken is not None and broken.event_id == target.pk
    assert broken.reason == f"event {target.pk} ({target.action}) was altered after it was written"


def test_verify_chain_names_the_gap_of_a_removed_event(trail):
    target = trail[7]
    _behind_the_trigger("governance_audit_no_delete", "DELETE FROM governance_auditevent WHERE id = %s",
                        [target.pk])
    broken = verify_chain()
    assert broken is not None and broken.event_id == trail[8].pk
    assert "does not link to the event before it" in broken.reason


def test_orm_save_and_delete_of_an_event_are_refused(trail):
    event = trail[3]
    event.reason = "rewritten"
    with pytest.raises(PermissionError, match="audit events are append-only"):
        event.save()
    with pytest.raises(PermissionError, match="audit events are append-only"):
        event.delete()


def test_database_refuses_update_and_delete_of_events(trail):
    event = trail[3]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(reason="rewritten")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE governance_auditevent SET actor_name = 'someone else' WHERE id = %s", [event.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM governance_auditevent")
    assert AuditEvent.objects.get(pk=event.pk).reason == event.reason
    assert verify_chain() is None


def test_audit_events_carry_actor_name_and_program(trail, program):
    approved = next(e for e in trail if e.action == "version.approved")
    assert approved.actor_name == "Reviewer2 Example" and approved.program == program
    assert approved.object_type == "PromptVersion"
