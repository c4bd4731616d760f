"""Scheduled jobs of the run machinery (celery beat): recovery of lost or forgotten work, and re-optimization.

Recovery requeues runs whose executor stopped sending heartbeats (or fails them after the last attempt) and sends
again the jobs of runs and evaluations queued for too long; re-optimization starts the scheduled runs of programs
whose data changed.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from governance import evaluator
from governance.actions import datasets as dataset_actions
from governance.actions import runs as run_actions
from governance.errors import GovernanceError
from governance.models import OptimizationRun, Program, RunStatus, Schedule
from governance.runner import max_attempts, redispatch_seconds, stale_seconds

logger = logging.getLogger(__name__)


def recover_stale_runs(*, stale_after: float | None = None, attempts: int | None = None,
                       queued_after: float | None = None) -> dict[int, str]:
    """Requeue (or, out of attempts, fail) every running run whose executor stopped sending heartbeats, and
    send again the task of every run queued for longer than `queued_after` seconds (its message may be lost)."""
    stale_after = stale_seconds() if stale_after is None else stale_after
    attempts = max_attempts() if attempts is None else attempts
    queued_after = redispatch_seconds() if queued_after is None else queued_after
    outcomes = {}
    for run_id in OptimizationRun.objects.filter(status=RunStatus.RUNNING).values_list("pk", flat=True):
        outcome = run_actions.recover_run(run_id, stale_after=stale_after, max_attempts=attempts)
        if outcome is not None:
            outcomes[run_id] = outcome
            logger.warning("run %s: executor lost, %s", run_id, outcome)
    for run_id in OptimizationRun.objects.filter(status=RunStatus.QUEUED).values_list("pk", flat=True):
        if run_actions.redispatch_run(run_id, queued_after=queued_after):
            outcomes[run_id] = "redispatched"
            logger.warning("run %s: queued too long, task sent again", run_id)
    for evaluation_id in evaluator.redispatch_waiting(queued_after):
        logger.warning("evaluation %s: queued too long, job sent again", evaluation_id)
    return outcomes


REOPTIMIZE_AFTER = {Schedule.NIGHTLY: 20 * 3600, Schedule.WEEKLY: 6.5 * 86400}  # seconds; slack for beat jitter


def reoptimize_due_programs() -> dict[str, int | str]:
    """Start a run for each program on a schedule whose last run is old enough and whose data changed since
    (the same data, seed and cache would only propose the same prompt again). Started as the owner."""
    started: dict[str, int | str] = {}
    for program in Program.objects.exclude(reoptimize_schedule=Schedule.NONE).select_related("owner"):
        last = program.runs.order_by("-created_at").first()
        if last is not None and (last.status in run_actions.ACTIVE_RUN_STATUSES or (
                timezone.now() - last.created_at).total_seconds() < REOPTIMIZE_AFTER[program.reoptimize_schedule]):
            continue
        hashes = {split: d.content_hash for split, d in dataset_actions.active_datasets(program).items()}
        if last is not None and last.dataset_hashes == hashes:
            continue
        try:
            started[program.slug] = run_actions.start_run(program, actor=program.owner, **_same_options(last)).pk
        except GovernanceError as exc:
            started[program.slug] = f"not started: {exc}"
            logger.warning("scheduled re-optimization of %s not started: %s", program.slug, exc)
    return started


def _same_options(last: OptimizationRun | None) -> dict[str, Any]:
    """A scheduled run repeats the previous run's preset, seed, trials and budget (defaults for the first)."""
    if last is None:
        return {}
    config = last.config
    return {"preset": config.get("preset", "light"), "seed": config.get("seed", 0),
            "num_trials": config.get("num_trials"), **(config.get("budget") or {})}
