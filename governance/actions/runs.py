"""Optimization runs: started and cancelled by people, moved through their states by the runner.

One audit event per state change of a run (started, executing, requeued, cancel requested, succeeded, failed,
cancelled). Trials are records of their own (the Trial table) and progress is a display field: neither writes
audit events nor history rows, so a run of hundreds of trials does not flood the hash chain.

Lock order: the run row, then (in the final transaction) the program and the new version, like every action.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from governance.actions._common import (
    Checks,
    create,
    expect_transition,
    lock,
    save,
    send_on_commit,
    transition,
    user_ref,
)
from governance.actions.datasets import active_datasets
from governance.actions.programs import _validate_lm_config
from governance.actions.reviews import evaluation_dataset, open_change_request, production_version
from governance.actions.versions import create_version
from governance.audit import record_event
from governance.errors import IllegalTransition, InvalidInput
from governance.models import (
    FINISHED_RUN_STATUSES,
    Candidate,
    CandidateKind,
    ChangeRequest,
    OptimizationRun,
    Program,
    Role,
    RunStatus,
    Split,
    Trial,
    TrialKind,
    VersionOrigin,
)
from governance.permissions import require_role
from governance.signals import run_finished, run_requested
from optimizer import (
    PRESETS,
    Budget,
    Metric,
    MetricError,
    TrialRecord,
    Usage,
    metric_calls_per_example,
    resolve_metric,
)

ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
_USAGE_FIELDS = ("calls", "cached_calls", "prompt_tokens", "completion_tokens", "cost_usd")
_BUDGET_FIELDS = ("max_calls", "max_tokens", "max_usd")
# Share of a token or USD cap kept for the final evaluation (calls are planned exactly, see below): what a
# test-set pass costs in tokens is only known once the search has chosen how many demos the prompt carries.
FINAL_EVALUATION_SHARE = 0.25


def final_evaluation_calls(test_rows: int, predictors: int, metric_calls: int = 0) -> int:
    """The most calls the final evaluation can make: candidate and production, every test row, every predictor
    and the metric's own calls (an LM judge's verdict); production's evaluation costs nothing when the system
    evaluated it before."""
    return 2 * test_rows * (predictors + metric_calls)


def final_evaluation_reserve(budget: Budget, *, calls: int) -> Budget:
    """The search's share of a run's budget: everything but the final evaluation's planned calls and share."""
    def share(cap: float | None) -> Any:
        return None if cap is None else type(cap)(cap * (1 - FINAL_EVALUATION_SHARE))
    return Budget(max_calls=None if budget.max_calls is None else max(budget.max_calls - calls, 0),
                  max_tokens=share(budget.max_tokens), max_usd=share(budget.max_usd))


def run_state(run: OptimizationRun) -> dict[str, Any]:
    """The audited picture of a run (progress is left out: it changes every trial)."""
    return {"status": run.status, "attempts": run.attempts, "worker": run.worker, "stop_reason": run.stop_reason,
            "error": run.error[:2000], "cancel_requested": run.cancel_requested, "calls": run.calls,
            "cost_usd": round(run.cost_usd, 6)}


# --- validation ---------------------------------------------------------------------------------------------


def _validate_options(preset: str, seed: Any, num_trials: Any, budget: dict[str, Any]) -> None:
    if preset not in PRESETS:
        raise InvalidInput(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}", field="preset")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInput(f"seed must be an integer >= 0, got {seed!r}", field="seed")
    if num_trials is not None and (isinstance(num_trials, bool) or not isinstance(num_trials, int) or num_trials < 1):
        raise InvalidInput(f"num_trials must be an integer >= 1, got {num_trials!r}", field="num_trials")
    for name, value in budget.items():
        kind = float if name == "max_usd" else int
        ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                               and value > 0 and (kind is float or float(value).is_integer()))
        if not ok:
            raise InvalidInput(f"{name} must be a positive {'number' if kind is float else 'integer'}, "
                               f"got {value!r}", field=name)


def task_lm_config(program: Program, override: dict[str, Any] | None) -> dict[str, Any]:
    """The run's model settings: the program's defaults with the run's overrides (no secret, no cache path:
    the key comes from the environment and the cache is the deployment's, see governance.runner)."""
    merged = {**_validate_lm_config(program.lm_config), **_validate_lm_config(override)}
    merged.pop("cache_path", None)
    merged.setdefault("model", settings.GOVERNANCE_DEFAULT_MODEL)
    return merged


def _run_datasets(program: Program) -> tuple[dict[str, int | None], dict[str, str]]:
    """Ids and content hashes of the datasets the run uses: fixed at start, so the run is reproducible even if
    newer data is imported while it waits in the queue."""
    active = active_datasets(program)
    if Split.TRAIN not in active:
        raise InvalidInput(f"program {program.slug} has no train dataset; import one before optimizing",
                           field="datasets")
    ids = {split: (active[split].pk if split in active else None) for split in Split.values}
    hashes = {split: dataset.content_hash for split, dataset in active.items()}
    return ids, hashes


def program_metric(program: Program) -> Metric:
    """The program's metric, loaded; a metric that no longer loads (an uninstalled package) is a 400 on
    `metric`, not a failure inside the run."""
    try:
        return resolve_metric(program.metric)
    except MetricError as exc:
        raise InvalidInput(f"program {program.slug}'s metric cannot be loaded: {exc}", field="metric") from None


def _check_budget_covers_final_evaluation(program: Program, max_calls: int | None) -> None:
    """A call cap must leave room for the final evaluation (planned up front) and at least one search call."""
    test = evaluation_dataset(program)
    needed = final_evaluation_calls(test.row_count, len(program.spec.get("predictors", [])),
                                    metric_calls_per_example(program_metric(program)))
    if max_calls is not None and max_calls <= needed:
        raise InvalidInput(f"max_calls={max_calls} cannot cover the run: the final evaluation of the candidate and "
                           f"production on the {test.row_count} test examples needs up to {needed} calls, so "
                           f"max_calls must be more than {needed} (the rest is the search's)", field="max_calls")


# --- actions (people) ---------------------------------------------------------------------------------------


@transaction.atomic
def start_run(program: Program, *, actor: Any, preset: str = "light", seed: int = 0, max_calls: int | None = None,
              max_tokens: int | None = None, max_usd: float | None = None, lm_config: dict[str, Any] | None = None,
              num_trials: int | None = None, enqueue: bool = True) -> OptimizationRun:
    """Queue an optimization run of `program` (author role, member). Needs a train dataset; without a val
    dataset the runner holds validation examples out of train.

    The job is enqueued once the transaction commits (a worker must never look for a row that is not there
    yet). `enqueue=False` leaves that to the caller (`manage.py optimize` runs it in the foreground).
    """
    check_start(program, actor)
    budget = {"max_calls": max_calls, "max_tokens": max_tokens, "max_usd": max_usd}
    _validate_options(preset, seed, num_trials, budget)
    lm = task_lm_config(program, lm_config)
    ids, hashes = _run_datasets(program)
    _check_budget_covers_final_evaluation(program, max_calls)
    config = {"preset": preset, "seed": seed, "num_trials": num_trials or PRESETS[preset].num_trials,
              "budget": budget, "task_lm": lm, "proposal_lm": lm, "metric": program.metric, "datasets": ids,
              "val_held_out": ids[Split.VAL] is None}
    run = create(OptimizationRun, by=actor, program=program, config=config, dataset_hashes=hashes,
                 study_name=f"{program.slug}-{uuid.uuid4().hex[:16]}", started_by=actor,
                 base_version=production_version(program),
                 progress={"trials_done": 0, "trials_planned": config["num_trials"], "phase": "queued"})
    record_event("run.started", actor=actor, obj=run, program=program,
                 after={**run_state(run), "config": config, "dataset_hashes": hashes, "study_name": run.study_name,
                        "base_version": run.base_version.number if run.base_version_id else None})
    if enqueue:
        send_on_commit(run_requested, OptimizationRun, run_id=run.pk)
    return run


def check_cancel(run: OptimizationRun, actor: Any) -> None:
    require_role(actor, Role.AUTHOR, run.program, doing="cancel optimization runs")
    expect_transition(run, RunStatus.CANCELLED, doing="be cancelled")
    if run.cancel_requested:
        raise IllegalTransition(f"run {run.pk} is already being cancelled")


def check_start(program: Program, actor: Any) -> None:
    require_role(actor, Role.AUTHOR, program, doing="start optimization runs")


# What a user may do now (governance.actions.rights gathers these tables).
RUN_CHECKS: Checks = {"cancel": check_cancel}
PROGRAM_RUN_CHECKS: Checks = {"start_run": check_start}


@transaction.atomic
def cancel_run(run: OptimizationRun, *, actor: Any, reason: str = "") -> OptimizationRun:
    """Ask a run to stop (author role, member). A queued run is cancelled at once; a running one stops at the
    next trial boundary, when the runner sees the flag; a finished run cannot be cancelled."""
    run = lock(run)
    check_cancel(run, actor)
    who = actor.get_username()
    if run.status == RunStatus.QUEUED:
        return _finish(run, RunStatus.CANCELLED, actor=actor, stop_reason=f"cancelled by {who} before it started",
                       reason=reason)
    before = run_state(run)
    run.cancel_requested = True
    save(run, actor=actor, fields=["cancel_requested"])
    record_event("run.cancel_requested", actor=actor, obj=run, program=run.program, before=before,
                 after={**run_state(run), "requested_by": user_ref(actor)}, reason=reason)
    return run


# --- transitions used by the runner (system actor) ----------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What `claim_run` decided: execute (with the run row), or skip and why."""

    run: OptimizationRun | None
    skipped: str = ""


@transaction.atomic
def claim_run(run_id: int, *, worker: str, stale_after: float) -> Claim:
    """Make `worker` the run's executor: queued -> running, or take over a running run whose executor stopped
    sending heartbeats. A run with a live executor, or a finished one, is skipped (a duplicate delivery)."""
    run = OptimizationRun.objects.select_for_update(no_key=True).filter(pk=run_id).first()
    if run is None:
        return Claim(None, f"run {run_id} does not exist")
    if run.status in FINISHED_RUN_STATUSES:
        return Claim(None, f"run {run_id} is already {run.status}")
    if run.status == RunStatus.RUNNING and not _is_stale(run, stale_after):
        return Claim(None, f"run {run_id} is running on {run.worker} (heartbeat {run.heartbeat_at})")
    if run.cancel_requested:
        _finish(run, RunStatus.CANCELLED, actor=None, stop_reason="cancelled before it could resume")
        return Claim(None, f"run {run_id} was cancelled before it could resume")
    now = timezone.now()
    transition(run, RunStatus.RUNNING, actor=None, action="run.resumed" if run.attempts > 0 else "run.executing",
               state=run_state, worker=worker, heartbeat_at=now, attempts=run.attempts + 1,
               started_at=run.started_at or now)
    return Claim(run)


def _is_stale(run: OptimizationRun, stale_after: float) -> bool:
    seen = run.heartbeat_at or run.started_at
    return seen is None or (timezone.now() - seen).total_seconds() > stale_after


@dataclass(frozen=True)
class TrialOutcome:
    """What the runner needs back after recording a trial: whether to stop, and the totals so far."""

    stop: str | None
    trials_done: int


@transaction.atomic
def record_trial(run_id: int, record: TrialRecord, *, worker: str, usage: Usage, owner: bool) -> TrialOutcome:
    """Store one trial (idempotent on (run, number, kind)), add the worker's spending since its last report to
    the run's totals, refresh the progress shown to people, and tell the caller whether to stop (cancel
    requested, or the run is no longer running).

    Not audited: trials are their own records. The row lock serializes the workers sharing a run.
    """
    _insert_trial(run_id, record)
    run = OptimizationRun.objects.select_for_update(no_key=True).get(pk=run_id)
    done = Trial.objects.filter(run_id=run_id).count()
    updates: dict[str, Any] = {"progress": _progress(run, record, worker, usage, done), **_usage_increments(usage)}
    if owner and run.worker == worker:
        updates["heartbeat_at"] = timezone.now()
    # update(), not save(): progress is not history-tracked, and a history row per trial would be a flood.
    OptimizationRun.objects.filter(pk=run_id).update(**updates)
    if run.status != RunStatus.RUNNING:
        return TrialOutcome(f"run is {run.status}", done)
    if owner and run.worker != worker:
        return TrialOutcome(f"run was taken over by {run.worker}", done)
    if run.cancel_requested:
        return TrialOutcome("cancel requested", done)
    return TrialOutcome(None, done)


def _progress(run: OptimizationRun, record: TrialRecord, worker: str, usage: Usage, done: int) -> dict[str, Any]:
    """Trials done/planned, best score, spending so far and a naive ETA (mean trial time so far)."""
    planned = int(run.progress.get("trials_planned") or run.config.get("num_trials") or done)
    workers = dict(run.progress.get("workers") or {})
    workers[worker] = workers.get(worker, 0) + 1
    elapsed = (timezone.now() - run.started_at).total_seconds() if run.started_at else 0.0
    eta = elapsed / done * max(planned - done, 0) if done else None
    return {**run.progress, "phase": "search", "trials_done": done, "trials_planned": planned,
            "best_score": _best(run.progress.get("best_score"), record.best_score),
            "calls": run.calls + usage.calls, "tokens": run.prompt_tokens + run.completion_tokens + usage.total_tokens,
            "cost_usd": round(run.cost_usd + usage.cost_usd, 6), "eta_seconds": None if eta is None else round(eta, 1),
            "workers": workers, "last_trial": {"number": record.number, "state": record.state, "score": record.score}}


def _insert_trial(run_id: int, record: TrialRecord) -> None:
    kind = TrialKind.FULL if record.is_full else TrialKind.MINIBATCH
    values = {"state": record.state, "params": record.params, "score": record.score, "examples": record.examples,
              "calls": record.calls, "tokens": record.tokens, "cost_usd": record.cost_usd,
              "seconds": record.seconds, "error": record.error or ""}
    try:
        with transaction.atomic():  # savepoint: a duplicate report (redelivery) must not abort the outer block
            Trial.objects.get_or_create(run_id=run_id, number=record.number, kind=kind, defaults=values)
    except IntegrityError:
        pass  # another process recorded the same trial at the same moment; the first write stands


def _best(current: float | None, new: float | None) -> float | None:
    values = [v for v in (current, new) if v is not None]
    return max(values) if values else None


def _usage_increments(usage: Usage) -> dict[str, Any]:
    """F() increments: several workers add their own spending to the same run without lost updates."""
    return {"calls": F("calls") + usage.calls, "cached_calls": F("cached_calls") + usage.cached_calls,
            "prompt_tokens": F("prompt_tokens") + usage.prompt_tokens,
            "completion_tokens": F("completion_tokens") + usage.completion_tokens,
            "cost_usd": F("cost_usd") + usage.cost_usd}


def record_progress(run_id: int, *, progress: dict[str, Any], usage: Usage | None = None,
                    heartbeat: bool = False) -> bool:
    """Merge display progress (phase, ETA, ...) and optionally spending and the heartbeat; not audited.

    Returns whether the run asked to stop (cancel requested or no longer running).
    """
    with transaction.atomic():
        run = OptimizationRun.objects.select_for_update(no_key=True).get(pk=run_id)
        updates: dict[str, Any] = {"progress": {**run.progress, **progress}}
        if usage is not None:
            updates.update(_usage_increments(usage))
        if heartbeat:
            updates["heartbeat_at"] = timezone.now()
        OptimizationRun.objects.filter(pk=run_id).update(**updates)
    return run.cancel_requested or run.status != RunStatus.RUNNING


def heartbeat(run_id: int, *, worker: str) -> bool:
    """The executor is alive. False when the run is no longer this worker's (taken over, or finished)."""
    return OptimizationRun.objects.filter(pk=run_id, worker=worker, status=RunStatus.RUNNING) \
        .update(heartbeat_at=timezone.now()) == 1


@transaction.atomic
def recover_run(run_id: int, *, stale_after: float, max_attempts: int) -> str | None:
    """A running run whose executor stopped sending heartbeats (worker killed, machine lost): requeue it
    (running -> queued; the optuna study lets the next executor continue where it stopped) or, after
    `max_attempts` executions, fail it with the reason "worker lost". None when the run needs nothing.

    The staleness is judged under the row lock, so a heartbeat that arrives meanwhile wins.
    """
    run = OptimizationRun.objects.select_for_update(no_key=True).filter(pk=run_id).first()
    if run is None or run.status != RunStatus.RUNNING or not _is_stale(run, stale_after):
        return None
    seen = run.heartbeat_at or run.started_at
    lost = f"worker lost: {run.worker or 'its worker'} sent no heartbeat since {seen.isoformat() if seen else 'ever'}"
    if run.attempts >= max_attempts:
        _finish(run, RunStatus.FAILED, actor=None, stop_reason="worker lost",
                error=f"{lost}; gave up after {run.attempts} attempt(s)")
        return RunStatus.FAILED
    transition(run, RunStatus.QUEUED, actor=None, action="run.requeued", state=run_state,
               reason=f"{lost}; attempt {run.attempts + 1} of {max_attempts} will resume the study", worker="",
               heartbeat_at=timezone.now(),  # for a queued run: when its task was last sent (see redispatch_run)
               progress={**run.progress, "phase": "requeued"})
    send_on_commit(run_requested, OptimizationRun, run_id=run_id)
    return RunStatus.QUEUED


@transaction.atomic
def redispatch_run(run_id: int, *, queued_after: float) -> bool:
    """Send again the task of a run queued for longer than `queued_after` seconds: its message may be lost (a
    broker restarted without persistence, a local pool gone with its process). A duplicate delivery is
    harmless, since claim_run lets exactly one executor take the run. False when the run needs nothing."""
    run = OptimizationRun.objects.select_for_update(no_key=True).filter(pk=run_id).first()
    if run is None or run.status != RunStatus.QUEUED:
        return False
    waiting_since = run.heartbeat_at or run.created_at
    waited = (timezone.now() - waiting_since).total_seconds()
    if waited <= queued_after:
        return False
    before = run_state(run)
    run.heartbeat_at = timezone.now()  # the next re-send waits another full interval
    save(run, actor=None, fields=["heartbeat_at"])
    record_event("run.redispatched", actor=None, obj=run, program=run.program, before=before,
                 after=run_state(run), reason=f"queued for {waited:.0f} s with no executor; task sent again")
    send_on_commit(run_requested, OptimizationRun, run_id=run_id)
    return True


@transaction.atomic
def finish_run(run: OptimizationRun, status: str, *, stop_reason: str = "", error: str = "",
               usage: Usage | None = None, worker: str | None = None) -> OptimizationRun:
    """running/queued -> succeeded | failed | cancelled (system actor), with the worker's last spending.

    Given `worker`, only while that worker still executes the run: an executor that was judged lost and
    handed on must not end the run its successor is executing.
    """
    run = lock(run)
    expect_transition(run, status, doing=f"become {status}")
    if worker is not None and run.worker != worker:
        raise IllegalTransition(f"run {run.pk} is executed by {run.worker or 'nobody'} now, not by {worker}")
    return _finish(run, status, actor=None, stop_reason=stop_reason, error=error, usage=usage)


def _finish(run: OptimizationRun, status: str, *, actor: Any, stop_reason: str = "", error: str = "",
            usage: Usage | None = None, reason: str = "") -> OptimizationRun:
    if status not in FINISHED_RUN_STATUSES:
        raise ValueError(f"{status!r} is not a final run status")
    spent = {field: getattr(run, field) + getattr(usage, field) for field in _USAGE_FIELDS} if usage is not None else {}
    now = timezone.now()
    wall_seconds = (now - run.started_at).total_seconds() if run.started_at else 0.0
    run = transition(run, status, actor=actor, action=f"run.{status}", state=run_state,
                     reason=reason or stop_reason or error[:500],
                     after={"trials": run.trials.count(), "wall_seconds": round(wall_seconds, 2)},
                     stop_reason=stop_reason[:200], error=error, finished_at=now, wall_seconds=wall_seconds,
                     progress={**run.progress, "phase": status, "eta_seconds": 0}, **spent)
    send_on_commit(run_finished, OptimizationRun, instance=run)
    return run


def store_candidates(run: OptimizationRun, candidates: dict[str, Any]) -> int:
    """Candidate rows from the optimizer's Candidates.to_dict(): every instruction and demo set considered.

    Idempotent: a resumed run that finishes stores the same candidates once.
    """
    rows = []
    for predictor, items in candidates.get("instructions", {}).items():
        for index, item in enumerate(items):
            rows.append(Candidate(run=run, predictor=predictor, kind=CandidateKind.INSTRUCTION, index=index,
                                  content=item.get("text", ""),
                                  metadata={k: v for k, v in item.items() if k != "text"}))
    for predictor, sets in candidates.get("demo_sets", {}).items():
        for index, demo_set in enumerate(sets):
            rows.append(Candidate(run=run, predictor=predictor, kind=CandidateKind.DEMO_SET, index=index,
                                  content=demo_set.get("demos", []),
                                  metadata={k: v for k, v in demo_set.items() if k != "demos"}))
    Candidate.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


# --- the run's outcome: one transaction ---------------------------------------------------------------------


class ProductionMoved(Exception):
    """Production changed while the runner evaluated against it; the runner evaluates again."""


@dataclass(frozen=True)
class Proposal:
    """What a finished search proposes, evaluated against production (built by governance.runner)."""

    payload: dict[str, Any]
    scores: dict[str, float]
    evaluation: dict[str, Any]
    candidates: dict[str, Any]
    stop_reason: str
    production_id: int | None
    title: str
    description: str


@transaction.atomic
def complete_run(run: OptimizationRun, *, worker: str, proposal: Proposal, usage: Usage) -> ChangeRequest | None:
    """Store the candidates, the proposed draft version and its change request, and mark the run succeeded, all
    or nothing. Opened as the run's starter, who can never approve it; never auto-approved.

    A cancel requested meanwhile wins (the run ends cancelled, no version). Returns the change request.
    """
    run = lock(run)
    expect_transition(run, RunStatus.SUCCEEDED, doing="complete")
    if run.worker != worker:
        raise IllegalTransition(f"run {run.pk} is executed by {run.worker or 'nobody'} now, not by {worker}")
    store_candidates(run, proposal.candidates)
    if run.cancel_requested:
        _finish(run, RunStatus.CANCELLED, actor=None, stop_reason="cancelled by request", usage=usage)
        return None
    production = production_version(run.program)
    if (production.pk if production else None) != proposal.production_id:
        raise ProductionMoved(f"production of {run.program.slug} moved during the final evaluation")
    version = create_version(run.program, actor=run.started_by, payload=proposal.payload, origin=VersionOrigin.OPTIMIZER,
                             parent=production, run=run, scores=proposal.scores,
                             note=f"Proposed by optimization run {run.pk} ({proposal.stop_reason}).")
    cr = open_change_request(version, actor=run.started_by, title=proposal.title, description=proposal.description,
                             provenance=proposal.evaluation)
    _finish(run, RunStatus.SUCCEEDED, actor=None, stop_reason=proposal.stop_reason, usage=usage)
    return cr


@transaction.atomic
def end_cancelled(run: OptimizationRun, *, candidates: dict[str, Any] | None, stop_reason: str,
                  usage: Usage) -> OptimizationRun:
    """The search stopped on a cancel request: keep what it considered, propose nothing."""
    run = lock(run)
    expect_transition(run, RunStatus.CANCELLED, doing="be cancelled")
    if candidates:
        store_candidates(run, candidates)
    return _finish(run, RunStatus.CANCELLED, actor=None, stop_reason=stop_reason, usage=usage)
