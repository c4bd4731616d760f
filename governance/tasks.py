"""Celery entry points only: each task takes ids, reloads rows and calls the runner or an action, which record
status and errors on the rows themselves (STYLE.md rule 4).

Run tasks are acks_late + reject_on_worker_lost: a message is acknowledged only once the run ended, so a worker
process that dies mid-run gives its message back. Redelivery is safe: `execute_run` claims the run under a row
lock and skips it while another executor's heartbeat is fresh; a run whose executor is gone is requeued by
`recover_stale_runs` (every minute under celery beat) and continues its optuna study.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from governance import evaluator, notify, runner, schedules
from governance.actions import monitoring
from governance.audit import verify_trail, write_checkpoint
from governance.celery import app
from governance.models import Program
from governance.oidc import checks as identity_checks

logger = logging.getLogger(__name__)


def _worker(task: Any, kind: str) -> str:
    """The executor's identity on the run row: role, Celery node name and process (one task at a time each)."""
    return f"{kind}:{task.request.hostname or 'celery'}:{os.getpid()}"


@app.task(bind=True, name="governance.tasks.run_optimization", acks_late=True, reject_on_worker_lost=True)
def run_optimization(self: Any, run_id: int) -> str:
    """Execute (or resume) optimization run `run_id` as its owner."""
    return runner.execute_run(run_id, worker_name=_worker(self, "owner"))


@app.task(bind=True, name="governance.tasks.run_trials", acks_late=True, reject_on_worker_lost=True)
def run_trials(self: Any, run_id: int) -> int:
    """Join the study of running run `run_id` and run trials of it (scale-out; see runner.spread_run)."""
    return runner.join_run(run_id, worker_name=_worker(self, "helper"))


@app.task(bind=True, name="governance.tasks.run_evaluation", acks_late=True, reject_on_worker_lost=True)
def run_evaluation(self: Any, evaluation_id: int) -> str:
    """Execute system evaluation `evaluation_id` (skipped when another executor claimed it)."""
    return evaluator.execute_evaluation(evaluation_id, worker=_worker(self, "evaluation"))


@app.task(name="governance.tasks.recover_stale_runs")
def recover_stale_runs() -> dict[int, str]:
    """Requeue or fail runs whose worker stopped sending heartbeats (killed, out of memory, machine lost)."""
    return schedules.recover_stale_runs()


@app.task(name="governance.tasks.reoptimize_due_programs")
def reoptimize_due_programs() -> dict[str, Any]:
    """Nightly: start the scheduled re-optimization of every program that is due and has new data."""
    return schedules.reoptimize_due_programs()


@app.task(name="governance.tasks.drift_check")
def drift_check(program_id: int | None = None) -> Any:
    """Check one program's production version on newly labeled data; without an id, fan out to every program
    that has a production version (one task each, so one slow program does not hold up the others)."""
    if program_id is None:
        ids = list(monitoring.programs_with_production().values_list("pk", flat=True))
        for pk in ids:
            drift_check.delay(pk)
        return {"enqueued": ids}
    result = evaluator.run_drift_check(Program.objects.get(pk=program_id))
    return result.summary() if result is not None else None


@app.task(name="governance.tasks.audit_checkpoint")
def audit_checkpoint() -> dict[str, Any] | None:
    """Scheduled: sign a checkpoint of the audit chain's head (nothing when no event came since the last)."""
    checkpoint = write_checkpoint(origin="schedule")
    if checkpoint is None:
        return None
    return {"checkpoint": checkpoint.pk, "event_count": checkpoint.event_count,
            "last_event_id": checkpoint.last_event_id}


@app.task(name="governance.tasks.check_identities")
def check_identities() -> dict[str, int]:
    """Beat job: refresh each SSO user's grant at the provider; one it refuses is deactivated (governance.oidc.checks)."""
    return vars(identity_checks.check_identities())


@app.task(name="governance.tasks.verify_audit_trail")
def verify_audit_trail() -> list[str]:
    """Nightly: walk the whole audit chain (`verify_audit --full`); problems are logged as errors."""
    problems = [problem.message for problem in verify_trail(full=True).problems]
    for message in problems:
        logger.error("audit trail verification: %s", message)
    return problems


@app.task(name="governance.tasks.send_notification_email", acks_late=True)
def send_notification_email(notification_id: int) -> bool:
    """One attempt at a notification's email; a failed one is due again later and the beat job below sends it."""
    return notify.attempt_email(notification_id)


@app.task(name="governance.tasks.send_due_notification_emails")
def send_due_notification_emails() -> int:
    """Beat job: send every notification email that is due (retries, messages a restart dropped)."""
    return len(notify.send_due_emails())
