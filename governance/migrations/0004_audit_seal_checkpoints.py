"""Audit seals and checkpoints (governance.audit):

- every audit event gets `seal` (HMAC-SHA256 of its hash with the audit key, which lives outside the database)
  and `seal_key_id`. The columns are added with plain `ALTER TABLE ... ADD COLUMN ... DEFAULT ''` on both
  databases: Django's SQLite schema editor would otherwise rebuild governance_auditevent for a NOT NULL column,
  and dropping the old table drops every integrity trigger on it. Events written before this migration keep an
  empty seal; the first sealed event's hash covers them (see governance.audit).
- AuditCheckpoint: signed statements of the chain's length and head, append-only like the events themselves
  (UPDATE, DELETE, SQLite REPLACE and PostgreSQL TRUNCATE refused).
"""

from django.db import migrations, models

TABLE = "governance_auditcheckpoint"
SAYS = "audit checkpoints are append-only"

ADD_SEAL_COLUMNS = [
    "ALTER TABLE governance_auditevent ADD COLUMN seal varchar(64) NOT NULL DEFAULT ''",
    "ALTER TABLE governance_auditevent ADD COLUMN seal_key_id varchar(16) NOT NULL DEFAULT ''",
]
DROP_SEAL_COLUMNS = [
    "ALTER TABLE governance_auditevent DROP COLUMN seal_key_id",
    "ALTER TABLE governance_auditevent DROP COLUMN seal",
]

SQLITE_CREATE = [
    f"""CREATE TRIGGER governance_checkpoint_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, '{SAYS}: UPDATE refused'); END""",
    f"""CREATE TRIGGER governance_checkpoint_no_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, '{SAYS}: DELETE refused'); END""",
    # INSERT OR REPLACE resolves a key conflict by deleting the old row, without firing DELETE triggers.
    f"""CREATE TRIGGER governance_checkpoint_no_replace BEFORE INSERT ON {TABLE}
        WHEN EXISTS (SELECT 1 FROM {TABLE} WHERE id = NEW.id OR last_event_id = NEW.last_event_id)
        BEGIN SELECT RAISE(ABORT, '{SAYS}: REPLACE of an existing checkpoint refused'); END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS governance_checkpoint_no_update",
    "DROP TRIGGER IF EXISTS governance_checkpoint_no_delete",
    "DROP TRIGGER IF EXISTS governance_checkpoint_no_replace",
]

POSTGRES_CREATE = [
    f"""CREATE OR REPLACE FUNCTION governance_checkpoint_append_only() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION '{SAYS}: % refused', TG_OP; END; $$ LANGUAGE plpgsql""",
    f"""CREATE TRIGGER governance_checkpoint_append_only BEFORE UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION governance_checkpoint_append_only()""",
    f"""CREATE TRIGGER governance_checkpoint_no_truncate BEFORE TRUNCATE ON {TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION governance_checkpoint_append_only()""",
]
POSTGRES_DROP = [
    f"DROP TRIGGER IF EXISTS governance_checkpoint_append_only ON {TABLE}",
    f"DROP TRIGGER IF EXISTS governance_checkpoint_no_truncate ON {TABLE}",
    "DROP FUNCTION IF EXISTS governance_checkpoint_append_only()",
]


def _run(statements_by_vendor):
    def apply(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor)
        if statements is None:
            raise RuntimeError(f"no audit checkpoint triggers for database {schema_editor.connection.vendor!r}")
        # A plain cursor: no parameter substitution, so plpgsql's own '%' placeholders pass through.
        with schema_editor.connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    return apply


class Migration(migrations.Migration):
    dependencies = [("governance", "0003_trigger_gaps")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="auditevent", name="seal",
                    field=models.CharField(blank=True, default="", max_length=64,
                                           help_text="HMAC-SHA256 of hash with the audit key; empty on events "
                                                     "older than seals."),
                ),
                migrations.AddField(
                    model_name="auditevent", name="seal_key_id",
                    field=models.CharField(blank=True, default="", max_length=16),
                ),
            ],
            database_operations=[migrations.RunSQL(ADD_SEAL_COLUMNS, DROP_SEAL_COLUMNS)],
        ),
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("created_at", models.DateTimeField()),
                ("event_count", models.PositiveBigIntegerField()),
                ("last_event_id", models.BigIntegerField(unique=True)),
                ("head_hash", models.CharField(max_length=64)),
                ("key_fingerprint", models.CharField(help_text="SHA-256 of the signing public key.",
                                                     max_length=64)),
                ("signature", models.CharField(help_text="Base64 Ed25519 signature of the statement.",
                                               max_length=100)),
                ("origin", models.CharField(help_text="command, schedule or auto (after K new events).",
                                            max_length=20)),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.RunPython(
            _run({"sqlite": SQLITE_CREATE, "postgresql": POSTGRES_CREATE}),
            _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}),
        ),
    ]
