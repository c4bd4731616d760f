"""The integrity triggers without gaps (migration 0003): what an insider with raw SQL access tried, refused.

SQLite attacks: `INSERT OR REPLACE` (deletes the conflicting row without firing DELETE triggers), `UPDATE OR
REPLACE` (deletes the row a changed key collides with), upserts, and raw UPDATE/DELETE of columns 0002 left
writable. tests/pg/test_pg_integrity_triggers.py covers PostgreSQL (upserts and TRUNCATE).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction

from governance.actions import edit_version, release_version, withdraw_change_request
from governance.actions.exports import export_version
from governance.errors import FrozenVersionError
from governance.models import AuditEvent, Export, PromptVersion, Release, Review
from governance.models.versions import FROZEN_FIELDS
from tests.governance.conftest import payload_with
from tests.governance.export_helpers import signing_key_settings

TRIGGERS_0002 = importlib.import_module("governance.migrations.0002_integrity_triggers")
TRIGGERS = importlib.import_module("governance.migrations.0003_trigger_gaps")
TRIGGERS_0010 = importlib.import_module("governance.migrations.0010_identity")  # extends the signed review columns

pytestmark = pytest.mark.django_db

# Columns of a frozen version that may still change, and of a review the only one that may (voided false -> true).
VERSION_WRITABLE_WHEN_FROZEN = {"status", "note"}
REVIEW_VOIDABLE = {"voided"}


def sqlite_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite variant; tests/pg covers PostgreSQL")


def copy_row_sql(verb: str, table: str, pk: int, changes: dict[str, Any], suffix: str = "") -> tuple[str, list]:
    """`<verb> INTO table (...) SELECT ... FROM table WHERE id = pk <suffix>`: the row copied onto itself (or onto
    a new key) with `changes`, as an attacker writes REPLACE or an upsert without knowing every value."""
    with connection.cursor() as cursor:
        columns = [column.name for column in connection.introspection.get_table_description(cursor, table)]
    select = ", ".join("%s" if column in changes else column for column in columns)
    params = [changes[column] for column in columns if column in changes] + [pk]
    return (f"{verb} INTO {table} ({', '.join(columns)}) SELECT {select} FROM {table} WHERE id = %s {suffix}",
            params)


def refused(match: str, sql: str, params: list | None = None) -> None:
    """The statement fails with the trigger's message and leaves the test's transaction usable."""
    with pytest.raises(DatabaseError, match=match), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def row(table: str, pk: int) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()


@pytest.fixture
def approved(make_approved) -> PromptVersion:
    return make_approved()


@pytest.fixture
def released(approved, releaser, tmp_path) -> tuple[Release, Export]:
    """The approved version released to production and exported: one Release and one Export row."""
    release = release_version(approved, actor=releaser, reason="go live")
    with signing_key_settings(tmp_path):
        export_version(approved, actor=releaser, label="production")
    return release, Export.objects.get(version=approved)


# --- audit events -----------------------------------------------------------------------------------------------


def test_insert_or_replace_cannot_rewrite_an_audit_event(approved):
    sqlite_only()
    event = AuditEvent.objects.get(action="version.approved", object_id=str(approved.pk))
    before = row("governance_auditevent", event.pk)
    refused("audit events are append-only: REPLACE", *copy_row_sql(
        "INSERT OR REPLACE", "governance_auditevent", event.pk, {"reason": "approved by nobody"}))
    # A new id with the event's (unique) hash would replace it just the same.
    top = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    refused("audit events are append-only: REPLACE", *copy_row_sql(
        "REPLACE", "governance_auditevent", event.pk, {"id": top + 1, "reason": "approved by nobody"}))
    assert row("governance_auditevent", event.pk) == before


# --- frozen versions ----------------------------------------------------------------------------------------------


def _swapped_model(version: PromptVersion) -> str:
    payload = dict(version.payload, lm={**version.payload["lm"], "model": "openai/some-other-model"})
    return json.dumps(payload)


def test_replace_cannot_rewrite_an_approved_version(approved):
    sqlite_only()
    before = row("governance_promptversion", approved.pk)
    swap = {"payload": _swapped_model(approved), "status": "draft"}
    refused("prompt version is frozen: REPLACE", *copy_row_sql(
        "INSERT OR REPLACE", "governance_promptversion", approved.pk, swap))
    # The same attack through the other unique key, (program, number), with a fresh id.
    top = PromptVersion.objects.order_by("-id").values_list("id", flat=True).first()
    refused("prompt version is frozen: REPLACE", *copy_row_sql(
        "REPLACE", "governance_promptversion", approved.pk, {**swap, "id": top + 1}))
    assert row("governance_promptversion", approved.pk) == before


def test_update_or_replace_of_a_draft_cannot_delete_an_approved_version(approved, make_version):
    sqlite_only()
    draft = make_version()
    refused("prompt version is frozen: UPDATE OR REPLACE",
            "UPDATE OR REPLACE governance_promptversion SET number = %s WHERE id = %s", [approved.number, draft.pk])
    refused("prompt version is frozen: UPDATE OR REPLACE",
            "UPDATE OR REPLACE governance_promptversion SET id = %s WHERE id = %s", [approved.pk, draft.pk])
    assert PromptVersion.objects.get(pk=approved.pk).payload == approved.payload


@pytest.mark.parametrize("column, value", [
    ("created_by_id", lambda users, other: users["author2"].pk),
    ("approved_at", lambda users, other: "2020-01-01 00:00:00"),
    ("scores", lambda users, other: json.dumps({"val": 0.99, "test": 0.99})),
    ("origin", lambda users, other: "optimizer"),
    ("parent_id", lambda users, other: other.pk),
    ("created_at", lambda users, other: "2020-01-01 00:00:00"),
    ("id", lambda users, other: other.pk + 1000),
])
def test_raw_update_of_any_manifest_field_of_an_approved_version_is_refused(approved, make_version, users,
                                                                            column, value):
    before = row("governance_promptversion", approved.pk)
    refused("prompt version is frozen", f"UPDATE governance_promptversion SET {column} = %s WHERE id = %s",
            [value(users, make_version()), approved.pk])
    assert row("governance_promptversion", approved.pk) == before


def test_model_guard_refuses_any_frozen_field_and_names_it(approved, users):
    approved.scores = {"val": 0.99, "test": 0.99}
    approved.created_by = users["author2"]
    with pytest.raises(FrozenVersionError, match="is approved and frozen; its scores, created_by cannot change"):
        approved.save()
    approved.refresh_from_db()
    approved.approved_at = None
    with pytest.raises(FrozenVersionError, match="its approved_at cannot change"):
        approved.save(update_fields=["approved_at"])
    approved.refresh_from_db()
    approved.note = "an annotation outside the signed content"
    approved.save(update_fields=["note"])  # status and note stay writable


def test_frozen_fields_of_the_model_guard_are_the_triggers_columns():
    columns = {PromptVersion._meta.get_field(name).column for name in FROZEN_FIELDS} | {"id"}
    assert columns == set(TRIGGERS.VERSION_FROZEN_COLUMNS)


def test_every_version_and_review_column_is_frozen_or_named_writable():
    """A new column must be classified (and its trigger extended in a migration), or it is a gap again."""
    version_columns = {field.column for field in PromptVersion._meta.concrete_fields}
    assert version_columns - VERSION_WRITABLE_WHEN_FROZEN == set(TRIGGERS.VERSION_FROZEN_COLUMNS)
    review_columns = {field.column for field in Review._meta.concrete_fields}
    assert review_columns - REVIEW_VOIDABLE == set(TRIGGERS_0010.REVIEW_SIGNED_COLUMNS)


# --- upserts ----------------------------------------------------------------------------------------------------


UPSERTS = {  # table -> (model, column the upsert rewrites, new value, what the refusal says); audit: see below
    "governance_promptversion": (PromptVersion, "scores", '{"test": 1.0}', "prompt version is frozen"),
    "governance_review": (Review, "printed_name", "Somebody Else", "reviews are signed records"),
    "governance_release": (Release, "reason", "nobody asked", "releases are append-only"),
    "governance_export": (Export, "label", "staging", "exports are append-only"),
}


@pytest.mark.parametrize("table", UPSERTS)
def test_upsert_cannot_rewrite_a_protected_row(released, table):
    sqlite_only()
    model, column, value, says = UPSERTS[table]
    pk = model.objects.order_by("-id").values_list("id", flat=True).first()
    before = row(table, pk)
    refused(says, *copy_row_sql("INSERT", table, pk, {column: value},
                                f"ON CONFLICT (id) DO UPDATE SET {column} = excluded.{column}"))
    assert row(table, pk) == before


def test_an_upsert_runs_the_update_triggers_even_without_the_replace_guard(approved):
    """SQLite's upsert is an UPDATE of the conflicting row: with the REPLACE guard lifted, 0002's trigger refuses."""
    sqlite_only()
    event = AuditEvent.objects.order_by("id").first()
    guard = next(s for s in TRIGGERS.SQLITE_CREATE if "governance_audit_no_replace" in s)
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER governance_audit_no_replace")
    try:
        refused("audit events are append-only: UPDATE refused", *copy_row_sql(
            "INSERT", "governance_auditevent", event.pk, {},
            "ON CONFLICT (id) DO UPDATE SET reason = 'rewritten'"))
    finally:
        with connection.cursor() as cursor:
            cursor.execute(guard)
    assert AuditEvent.objects.get(pk=event.pk).reason == event.reason


# --- reviews --------------------------------------------------------------------------------------------------


def test_voiding_is_the_only_change_a_review_accepts(make_cr, approve, reviewer1, author, program):
    cr = make_cr()
    approve(cr, reviewer1)
    withdraw_change_request(cr, actor=author, reason="one more edit")
    edited = edit_version(cr.version, actor=author, payload=payload_with(program, "Edited after the approval."))
    review = Review.objects.get(change_request=cr, reviewer=reviewer1)
    assert review.voided  # the action's voiding passed the trigger

    refused("reviews are signed records: only voiding", "UPDATE governance_review SET voided = %s WHERE id = %s",
            [False, review.pk])
    for column, value in [("printed_name", "Somebody Else"), ("content_hash", edited.content_hash),
                          ("decision", "reject"), ("reason", "rewritten"), ("signed_at", "2020-01-01 00:00:00"),
                          ("reviewer_id", author.pk), ("auth_subject", "someone-else"),
                          ("auth_issuer", "https://elsewhere.example"), ("auth_time", "2020-01-01 00:00:00")]:
        refused("reviews are signed records: only voiding",
                f"UPDATE governance_review SET {column} = %s WHERE id = %s", [value, review.pk])
    refused("reviews are signed records: DELETE refused", "DELETE FROM governance_review WHERE id = %s", [review.pk])
    assert Review.objects.get(pk=review.pk).voided


def test_replace_cannot_rewrite_a_signature(make_cr, approve, reviewer1):
    sqlite_only()
    cr = make_cr()
    review = approve(cr, reviewer1)
    before = row("governance_review", review.pk)
    refused("reviews are signed records: REPLACE", *copy_row_sql(
        "INSERT OR REPLACE", "governance_review", review.pk, {"reason": "never said that"}))
    # A fresh id that meets the live approval on (change request, reviewer, content hash) replaces it too.
    refused("reviews are signed records: REPLACE", *copy_row_sql(
        "REPLACE", "governance_review", review.pk, {"id": review.pk + 1000, "printed_name": "Somebody Else"}))
    assert row("governance_review", review.pk) == before


# --- releases and exports -------------------------------------------------------------------------------------


@pytest.mark.parametrize("table, column, value, says", [
    ("governance_release", "reason", "nobody asked", "releases are append-only"),
    ("governance_export", "label", "staging", "exports are append-only"),
])
def test_releases_and_exports_are_append_only(released, table, column, value, says):
    pk = {"governance_release": released[0].pk, "governance_export": released[1].pk}[table]
    before = row(table, pk)
    refused(f"{says}: UPDATE refused", f"UPDATE {table} SET {column} = %s WHERE id = %s", [value, pk])
    refused(f"{says}: DELETE refused", f"DELETE FROM {table} WHERE id = %s", [pk])
    if connection.vendor == "sqlite":
        refused(f"{says}: REPLACE", *copy_row_sql("INSERT OR REPLACE", table, pk, {column: value}))
    assert row(table, pk) == before


# --- the triggers stay installed, and the test flush gets past them -------------------------------------------


def installed_triggers() -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        return {name for (name,) in cursor.fetchall()}


def test_every_integrity_trigger_is_installed():
    """A later migration that rebuilds one of these tables (SQLite's ALTER does) must re-create its triggers."""
    if connection.vendor == "sqlite":
        expected = [s.split()[2] for s in TRIGGERS_0002.SQLITE_CREATE] + TRIGGERS.SQLITE_TRIGGER_NAMES
    else:
        expected = ["governance_audit_append_only", "governance_version_frozen",
                    *[s.split()[2] for s in TRIGGERS.POSTGRES_CREATE if s.startswith("CREATE TRIGGER")]]
    assert set(expected) - installed_triggers() == set()


def test_committed_rows_under_every_trigger_are_flushed_afterwards(committed_db, released):
    """committed_db's teardown empties a database holding frozen versions, reviews, releases and exports, with
    every trigger in place during the test (and re-created for the next one)."""
    assert Release.objects.exists() and Export.objects.exists()
    if connection.vendor == "sqlite":
        assert set(TRIGGERS.SQLITE_TRIGGER_NAMES) <= installed_triggers()
