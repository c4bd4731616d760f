"""Close the gaps 0002's triggers left open to someone with raw database access:

- SQLite `INSERT OR REPLACE` / `REPLACE` deletes the conflicting row without firing DELETE triggers, and
  `UPDATE OR REPLACE` deletes the row a changed key collides with: a BEFORE INSERT trigger refuses any insert
  that meets an existing protected row on a unique key, and a BEFORE UPDATE trigger refuses a version update
  whose key lands on a frozen version.
- PostgreSQL `TRUNCATE` fires no row trigger: a statement-level BEFORE TRUNCATE trigger on every protected
  table (the history of versions and reviews included).
- A frozen version froze only payload, content hash, program and number; every column that reaches a signed
  manifest or the approval record is frozen now (only `status`, approved -> retired, and `note`, an annotation
  outside the signed content and the manifest, stay writable). The model guard in
  governance/models/versions.py lists the same fields (a test holds the two lists equal).
- Reviews (signed records): the only change is voiding a live approval (voided false -> true).
- Releases (the record of label moves) and exports: append-only.

An upsert (`INSERT ... ON CONFLICT DO UPDATE`) runs the UPDATE triggers on both databases, so the update rules
above cover it; on SQLite the conflict guard refuses it even earlier.
"""

from django.db import migrations

FROZEN = "('approved', 'retired')"

# Columns of an approved/retired version that never change (the model's FROZEN_FIELDS, as columns, plus id).
VERSION_FROZEN_COLUMNS = ("id", "program_id", "number", "parent_id", "payload", "content_hash", "origin", "run_id",
                          "scores", "created_by_id", "created_at", "approved_at")
# Columns of a review that never change; `voided` may only go from false to true.
REVIEW_SIGNED_COLUMNS = ("id", "change_request_id", "version_id", "reviewer_id", "version_author_id",
                         "run_starter_id", "decision", "reason", "meaning", "printed_name", "content_hash",
                         "auth_method", "ip_address", "signed_at")
APPEND_ONLY = {"governance_release": "releases are append-only", "governance_export": "exports are append-only"}
# PostgreSQL TRUNCATE guards: table -> what the refusal says.
TRUNCATE_GUARDED = {
    "governance_auditevent": "audit events are append-only",
    "governance_promptversion": "prompt versions hold frozen content",
    "governance_historicalpromptversion": "the history of prompt versions is append-only",
    "governance_review": "reviews are signed records",
    "governance_historicalreview": "the history of reviews is append-only",
    **APPEND_ONLY,
}
TRUNCATE_TRIGGER_NAMES = {table: f"{table}_no_truncate" for table in TRUNCATE_GUARDED}
TRUNCATE_TRIGGER_NAMES["governance_auditevent"] = "governance_audit_no_truncate"


def _changed(columns: tuple[str, ...], differs: str) -> str:
    """`NEW.a IS NOT OLD.a OR NEW.b IS NOT OLD.b ...` (SQLite `IS NOT`, PostgreSQL `IS DISTINCT FROM`)."""
    return " OR ".join(f"NEW.{column} {differs} OLD.{column}" for column in columns)


def _raise(message: str) -> str:
    return f"BEGIN SELECT RAISE(ABORT, '{message}'); END"


def _sqlite_append_only(table: str, says: str) -> list[str]:
    return [
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} {_raise(f'{says}: UPDATE refused')}",
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} {_raise(f'{says}: DELETE refused')}",
        f"""CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table}
            WHEN EXISTS (SELECT 1 FROM {table} WHERE id = NEW.id)
            {_raise(f'{says}: REPLACE of an existing row refused')}""",
    ]


SQLITE_CREATE = [
    """CREATE TRIGGER governance_audit_no_replace BEFORE INSERT ON governance_auditevent
       WHEN EXISTS (SELECT 1 FROM governance_auditevent WHERE id = NEW.id OR hash = NEW.hash)
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only: REPLACE of an existing event refused'); END""",
    f"""CREATE TRIGGER governance_version_frozen_replace BEFORE INSERT ON governance_promptversion
        WHEN EXISTS (SELECT 1 FROM governance_promptversion WHERE status IN {FROZEN}
                     AND (id = NEW.id OR (program_id = NEW.program_id AND number = NEW.number)))
        BEGIN SELECT RAISE(ABORT, 'prompt version is frozen: REPLACE of an approved version refused'); END""",
    f"""CREATE TRIGGER governance_version_frozen_update_replace BEFORE UPDATE ON governance_promptversion
        WHEN EXISTS (SELECT 1 FROM governance_promptversion WHERE id <> OLD.id AND status IN {FROZEN}
                     AND (id = NEW.id OR (program_id = NEW.program_id AND number = NEW.number)))
        BEGIN SELECT RAISE(ABORT, 'prompt version is frozen: UPDATE OR REPLACE over an approved version refused');
        END""",
    f"""CREATE TRIGGER governance_version_frozen_columns BEFORE UPDATE ON governance_promptversion
        WHEN OLD.status IN {FROZEN} AND ({_changed(VERSION_FROZEN_COLUMNS, 'IS NOT')})
        BEGIN SELECT RAISE(ABORT, 'prompt version is frozen: its recorded fields cannot change'); END""",
    f"""CREATE TRIGGER governance_review_signed_update BEFORE UPDATE ON governance_review
        WHEN {_changed(REVIEW_SIGNED_COLUMNS, 'IS NOT')}
             OR (NEW.voided IS NOT OLD.voided AND NOT (OLD.voided = 0 AND NEW.voided = 1))
        BEGIN SELECT RAISE(ABORT, 'reviews are signed records: only voiding an approval may change one'); END""",
    """CREATE TRIGGER governance_review_no_delete BEFORE DELETE ON governance_review
       BEGIN SELECT RAISE(ABORT, 'reviews are signed records: DELETE refused'); END""",
    # The partial unique index one_live_approval_per_reviewer is a key REPLACE would also resolve by deleting.
    """CREATE TRIGGER governance_review_no_replace BEFORE INSERT ON governance_review
       WHEN EXISTS (SELECT 1 FROM governance_review WHERE id = NEW.id
                    OR (NEW.decision = 'approve' AND NEW.voided = 0 AND decision = 'approve' AND voided = 0
                        AND change_request_id = NEW.change_request_id AND reviewer_id = NEW.reviewer_id
                        AND content_hash = NEW.content_hash))
       BEGIN SELECT RAISE(ABORT, 'reviews are signed records: REPLACE of an existing review refused'); END""",
    *[statement for table, says in APPEND_ONLY.items() for statement in _sqlite_append_only(table, says)],
]
SQLITE_TRIGGER_NAMES = [statement.split()[2] for statement in SQLITE_CREATE]
SQLITE_DROP = [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGER_NAMES]

POSTGRES_CREATE = [
    """CREATE OR REPLACE FUNCTION governance_refuse_truncate() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION '%: TRUNCATE refused', TG_ARGV[0]; END; $$ LANGUAGE plpgsql""",
    *[f"""CREATE TRIGGER {TRUNCATE_TRIGGER_NAMES[table]} BEFORE TRUNCATE ON {table}
          FOR EACH STATEMENT EXECUTE FUNCTION governance_refuse_truncate('{says}')"""
      for table, says in TRUNCATE_GUARDED.items()],
    f"""CREATE OR REPLACE FUNCTION governance_version_frozen_columns() RETURNS trigger AS $$
        BEGIN
          IF OLD.status IN {FROZEN} AND ({_changed(VERSION_FROZEN_COLUMNS, 'IS DISTINCT FROM')}) THEN
            RAISE EXCEPTION 'prompt version is frozen: its recorded fields cannot change';
          END IF;
          RETURN NEW;
        END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER governance_version_frozen_columns BEFORE UPDATE ON governance_promptversion
       FOR EACH ROW EXECUTE FUNCTION governance_version_frozen_columns()""",
    f"""CREATE OR REPLACE FUNCTION governance_review_signed() RETURNS trigger AS $$
        BEGIN
          IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'reviews are signed records: DELETE refused';
          END IF;
          IF {_changed(REVIEW_SIGNED_COLUMNS, 'IS DISTINCT FROM')} OR (OLD.voided AND NOT NEW.voided) THEN
            RAISE EXCEPTION 'reviews are signed records: only voiding an approval may change one';
          END IF;
          RETURN NEW;
        END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER governance_review_signed BEFORE UPDATE OR DELETE ON governance_review
       FOR EACH ROW EXECUTE FUNCTION governance_review_signed()""",
    """CREATE OR REPLACE FUNCTION governance_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION '%: % refused', TG_ARGV[0], TG_OP; END; $$ LANGUAGE plpgsql""",
    *[f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
          FOR EACH ROW EXECUTE FUNCTION governance_append_only('{says}')""" for table, says in APPEND_ONLY.items()],
]
POSTGRES_DROP = [
    *[f"DROP TRIGGER IF EXISTS {name} ON {table}" for table, name in TRUNCATE_TRIGGER_NAMES.items()],
    "DROP TRIGGER IF EXISTS governance_version_frozen_columns ON governance_promptversion",
    "DROP TRIGGER IF EXISTS governance_review_signed ON governance_review",
    *[f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}" for table in APPEND_ONLY],
    "DROP FUNCTION IF EXISTS governance_refuse_truncate()",
    "DROP FUNCTION IF EXISTS governance_version_frozen_columns()",
    "DROP FUNCTION IF EXISTS governance_review_signed()",
    "DROP FUNCTION IF EXISTS governance_append_only()",
]


def _run(statements_by_vendor):
    def apply(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor)
        if statements is None:
            raise RuntimeError(f"no integrity triggers for database {schema_editor.connection.vendor!r}")
        # A plain cursor: no parameter substitution, so plpgsql's own '%' placeholders pass through.
        with schema_editor.connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    return apply


class Migration(migrations.Migration):
    dependencies = [("governance", "0002_integrity_triggers")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_CREATE, "postgresql": POSTGRES_CREATE}),
            _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}),
        ),
    ]
