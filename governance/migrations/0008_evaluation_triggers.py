"""System evaluations are evidence: once finished they never change, and their per-example results never do.

- governance_evaluation: a succeeded, failed or cancelled row refuses UPDATE and DELETE (a queued or running one
  is still being written by its executor); SQLite REPLACE onto a finished row is refused.
- governance_evaluationresult: append-only (UPDATE, DELETE, SQLite REPLACE refused).
- PostgreSQL: TRUNCATE of either table refused.
Reuses the trigger functions of 0003 on PostgreSQL (governance_refuse_truncate, governance_append_only).
"""

import importlib

from django.db import migrations

GAPS = importlib.import_module("governance.migrations.0003_trigger_gaps")
FINISHED = "('succeeded', 'failed', 'cancelled')"
SAYS = "a finished evaluation is evidence and cannot change"
RESULTS = "governance_evaluationresult"

SQLITE_CREATE = [
    f"""CREATE TRIGGER governance_evaluation_finished_update BEFORE UPDATE ON governance_evaluation
        WHEN OLD.status IN {FINISHED} {GAPS._raise(f'{SAYS}: UPDATE refused')}""",
    f"""CREATE TRIGGER governance_evaluation_finished_delete BEFORE DELETE ON governance_evaluation
        WHEN OLD.status IN {FINISHED} {GAPS._raise(f'{SAYS}: DELETE refused')}""",
    f"""CREATE TRIGGER governance_evaluation_finished_replace BEFORE INSERT ON governance_evaluation
        WHEN EXISTS (SELECT 1 FROM governance_evaluation WHERE id = NEW.id AND status IN {FINISHED})
        {GAPS._raise(f'{SAYS}: REPLACE refused')}""",
    *GAPS._sqlite_append_only(RESULTS, "evaluation results are append-only"),
]
SQLITE_TRIGGER_NAMES = [statement.split()[2] for statement in SQLITE_CREATE]
SQLITE_DROP = [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGER_NAMES]

POSTGRES_CREATE = [
    f"""CREATE OR REPLACE FUNCTION governance_evaluation_finished() RETURNS trigger AS $$
        BEGIN
          IF OLD.status IN {FINISHED} THEN
            RAISE EXCEPTION '{SAYS}: % refused', TG_OP;
          END IF;
          IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
          RETURN NEW;
        END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER governance_evaluation_finished BEFORE UPDATE OR DELETE ON governance_evaluation
       FOR EACH ROW EXECUTE FUNCTION governance_evaluation_finished()""",
    f"""CREATE TRIGGER {RESULTS}_append_only BEFORE UPDATE OR DELETE ON {RESULTS}
        FOR EACH ROW EXECUTE FUNCTION governance_append_only('evaluation results are append-only')""",
    *[f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
          FOR EACH STATEMENT EXECUTE FUNCTION governance_refuse_truncate('{says}')"""
      for table, says in (("governance_evaluation", SAYS), (RESULTS, "evaluation results are append-only"))],
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS governance_evaluation_finished ON governance_evaluation",
    f"DROP TRIGGER IF EXISTS {RESULTS}_append_only ON {RESULTS}",
    "DROP TRIGGER IF EXISTS governance_evaluation_no_truncate ON governance_evaluation",
    f"DROP TRIGGER IF EXISTS {RESULTS}_no_truncate ON {RESULTS}",
    "DROP FUNCTION IF EXISTS governance_evaluation_finished()",
]


class Migration(migrations.Migration):
    dependencies = [("governance", "0007_evaluations")]

    operations = [
        migrations.RunPython(
            GAPS._run({"sqlite": SQLITE_CREATE, "postgresql": POSTGRES_CREATE}),
            GAPS._run({"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}),
        ),
    ]
