"""Migration 0003's triggers on PostgreSQL: TRUNCATE, upserts and raw UPDATE/DELETE refused, as an insider tried.

Row triggers never see TRUNCATE; an upsert's DO UPDATE runs the BEFORE UPDATE row triggers, which these tests
prove table by table. Run by tests/test_postgresql.py.
"""

from __future__ import annotations

import importlib

import pytest
from django.db import DatabaseError, connection, transaction

from governance.actions.exports import export_version
from governance.models import AuditEvent, Export, PromptVersion, Release, Review
from tests.governance.export_helpers import (  # noqa: F401  (fast_password_hashing is an autouse fixture)
    Team,
    approved,
    fast_password_hashing,
    make_team,
    release,
    signing_key_settings,
)
from tests.governance.test_integrity_triggers import copy_row_sql, installed_triggers, refused, row

TRIGGERS = importlib.import_module("governance.migrations.0003_trigger_gaps")

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def signing(tmp_path):
    with signing_key_settings(tmp_path):
        yield


@pytest.fixture
def world() -> tuple[Team, PromptVersion]:
    """An approved version with its two reviews, released to production and exported."""
    team = make_team()
    version = approved(team)
    release(team, version)
    export_version(version, actor=team.releaser, label="production")
    return team, version


def count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        return cursor.fetchone()[0]


def truncate_refused(table: str) -> None:
    with pytest.raises(DatabaseError, match=f"{TRIGGERS.TRUNCATE_GUARDED[table]}: TRUNCATE refused"), \
            transaction.atomic(), connection.cursor() as cursor:
        # TRUNCATE refuses to run while the transaction's deferred foreign-key checks are pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"TRUNCATE {table} CASCADE")


@pytest.mark.parametrize("table", list(TRIGGERS.TRUNCATE_GUARDED))
def test_truncate_is_refused(world, table):
    before = count(table)
    assert before > 0
    truncate_refused(table)
    assert count(table) == before


@pytest.mark.parametrize("column, value", [
    ("created_by_id", lambda team: team.outsider.pk),
    ("approved_at", lambda team: "2020-01-01T00:00:00Z"),
    ("scores", lambda team: '{"val": 0.99, "test": 0.99}'),
    ("origin", lambda team: "dspy_import"),
    ("created_at", lambda team: "2020-01-01T00:00:00Z"),
])
def test_raw_update_of_a_manifest_field_of_an_approved_version_is_refused(world, column, value):
    team, version = world
    before = row("governance_promptversion", version.pk)
    refused("prompt version is frozen: its recorded fields cannot change",
            f"UPDATE governance_promptversion SET {column} = %s WHERE id = %s", [value(team), version.pk])
    assert row("governance_promptversion", version.pk) == before


UPSERTS = {  # table -> (model, the rewrite on conflict, what the refusal says)
    "governance_promptversion": (PromptVersion, """scores = '{"test": 1.0}'::jsonb""", "prompt version is frozen"),
    "governance_review": (Review, "printed_name = 'Somebody Else'", "reviews are signed records: only voiding"),
    "governance_release": (Release, "reason = 'nobody asked'", "releases are append-only: UPDATE refused"),
    "governance_export": (Export, "label = 'staging'", "exports are append-only: UPDATE refused"),
}


@pytest.mark.parametrize("table", UPSERTS)
def test_upsert_runs_the_update_triggers_and_is_refused(world, table):
    model, rewrite, says = UPSERTS[table]
    pk = model.objects.order_by("-id").values_list("id", flat=True).first()
    before = row(table, pk)
    refused(says, *copy_row_sql("INSERT", table, pk, {}, f"ON CONFLICT (id) DO UPDATE SET {rewrite}"))
    assert row(table, pk) == before


def test_a_review_may_be_voided_and_nothing_else(world):
    team, version = world
    review = Review.objects.filter(version=version).order_by("id").first()
    for column, value in [("printed_name", "Somebody Else"), ("content_hash", "0" * 64), ("decision", "reject"),
                          ("signed_at", "2020-01-01T00:00:00Z"), ("reviewer_id", team.outsider.pk)]:
        refused("reviews are signed records: only voiding an approval may change one",
                f"UPDATE governance_review SET {column} = %s WHERE id = %s", [value, review.pk])
    refused("reviews are signed records: DELETE refused", "DELETE FROM governance_review WHERE id = %s", [review.pk])
    with connection.cursor() as cursor:  # what void_stale_approvals writes
        cursor.execute("UPDATE governance_review SET voided = true WHERE id = %s", [review.pk])
    refused("reviews are signed records: only voiding", "UPDATE governance_review SET voided = false WHERE id = %s",
            [review.pk])
    assert Review.objects.get(pk=review.pk).voided


@pytest.mark.parametrize("model, table, column, says", [
    (Release, "governance_release", "reason", "releases are append-only"),
    (Export, "governance_export", "label", "exports are append-only"),
])
def test_releases_and_exports_refuse_update_and_delete(world, model, table, column, says):
    pk = model.objects.get().pk
    before = row(table, pk)
    refused(f"{says}: UPDATE refused", f"UPDATE {table} SET {column} = 'rewritten' WHERE id = %s", [pk])
    refused(f"{says}: DELETE refused", f"DELETE FROM {table} WHERE id = %s", [pk])
    assert row(table, pk) == before


def test_every_integrity_trigger_is_installed_on_postgresql():
    expected = {"governance_audit_append_only", "governance_version_frozen",
                *(s.split()[2] for s in TRIGGERS.POSTGRES_CREATE if s.startswith("CREATE TRIGGER"))}
    assert expected - installed_triggers() == set()


@pytest.mark.django_db(transaction=True)
def test_committed_tests_meet_the_triggers_and_their_flush_gets_past_them():
    """The flush after this test truncates frozen rows (tests/pg/conftest.py); the test itself runs guarded."""
    approved(make_team())
    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        assert cursor.fetchone()[0] == "origin"
    truncate_refused("governance_auditevent")
    assert AuditEvent.objects.exists()
