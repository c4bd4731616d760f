"""Database triggers that hold even against raw SQL and QuerySet.update():

- audit events are append-only (no UPDATE, no DELETE);
- an approved or retired prompt version keeps its content forever, may only move approved -> retired,
  and cannot be deleted.
"""

from django.db import migrations

FROZEN = "('approved', 'retired')"

SQLITE_CREATE = [
    """CREATE TRIGGER governance_audit_no_update BEFORE UPDATE ON governance_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER governance_audit_no_delete BEFORE DELETE ON governance_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END""",
    f"""CREATE TRIGGER governance_version_frozen_update BEFORE UPDATE ON governance_promptversion
       WHEN OLD.status IN {FROZEN} AND (NEW.payload IS NOT OLD.payload OR NEW.content_hash IS NOT OLD.content_hash
            OR NEW.program_id IS NOT OLD.program_id OR NEW.number IS NOT OLD.number
            OR NEW.status NOT IN {FROZEN} OR (OLD.status = 'retired' AND NEW.status <> 'retired'))
       BEGIN SELECT RAISE(ABORT, 'prompt version is frozen: approved content cannot change'); END""",
    f"""CREATE TRIGGER governance_version_frozen_delete BEFORE DELETE ON governance_promptversion
       WHEN OLD.status IN {FROZEN}
       BEGIN SELECT RAISE(ABORT, 'prompt version is frozen: approved versions cannot be deleted'); END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS governance_audit_no_update",
    "DROP TRIGGER IF EXISTS governance_audit_no_delete",
    "DROP TRIGGER IF EXISTS governance_version_frozen_update",
    "DROP TRIGGER IF EXISTS governance_version_frozen_delete",
]

POSTGRES_CREATE = [
    """CREATE OR REPLACE FUNCTION governance_audit_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP; END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER governance_audit_append_only BEFORE UPDATE OR DELETE ON governance_auditevent
       FOR EACH ROW EXECUTE FUNCTION governance_audit_append_only()""",
    f"""CREATE OR REPLACE FUNCTION governance_version_frozen() RETURNS trigger AS $$
       BEGIN
         IF TG_OP = 'DELETE' THEN
           IF OLD.status IN {FROZEN} THEN
             RAISE EXCEPTION 'prompt version is frozen: approved versions cannot be deleted';
           END IF;
           RETURN OLD;
         END IF;
         IF OLD.status IN {FROZEN} AND (NEW.payload IS DISTINCT FROM OLD.payload
              OR NEW.content_hash IS DISTINCT FROM OLD.content_hash OR NEW.program_id IS DISTINCT FROM OLD.program_id
              OR NEW.number IS DISTINCT FROM OLD.number OR NEW.status NOT IN {FROZEN}
              OR (OLD.status = 'retired' AND NEW.status <> 'retired')) THEN
           RAISE EXCEPTION 'prompt version is frozen: approved content cannot change';
         END IF;
         RETURN NEW;
       END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER governance_version_frozen BEFORE UPDATE OR DELETE ON governance_promptversion
       FOR EACH ROW EXECUTE FUNCTION governance_version_frozen()""",
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS governance_audit_append_only ON governance_auditevent",
    "DROP TRIGGER IF EXISTS governance_version_frozen ON governance_promptversion",
    "DROP FUNCTION IF EXISTS governance_audit_append_only()",
    "DROP FUNCTION IF EXISTS governance_version_frozen()",
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
    dependencies = [("governance", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_CREATE, "postgresql": POSTGRES_CREATE}),
            _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}),
        ),
    ]
