"""Executes optimization runs: in a Celery worker, in the web process's local pool (governance.jobs), or in the
foreground (CLI). A run whose process died is picked up by `recover_stale_runs` (celery beat runs it every
minute; embedded installs can call it).

Resume and scale-out rest on the optuna study, stored in the app's database (PostgreSQL) or, on SQLite, in a
file next to it (a separate file so the study's writes never lock the app database): a re-executed run
continues its study where it stopped, and `spread_run` lets more workers run trials of the same study.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.dispatch import receiver

from governance import evaluator, jobs
from governance.actions import evaluations as evaluation_actions
from governance.actions import reviews as review_actions
from governance.actions import runs as run_actions
from governance.actions import datasets as dataset_actions
from governance.errors import GovernanceError
from governance.jobs import (
    CancelWatch,
    GuardedLM,
    ModelFailing,
    PollingThread,
    guarded_lm,
    guarded_metric,
    lm_config_from,
    local_executor,
    worker_name,
)
from governance.models import (
    ChangeRequest,
    Dataset,
    Evaluation,
    EvaluationStatus,
    OptimizationRun,
    RunStatus,
)
from governance.signals import run_requested
from governance.studies import dispose_storage, ensure_optuna_storage, optuna_storage_url
from optimizer import (
    MIPRO,
    PRESETS,
    Budget,
    Example,
    LMConfig,
    MIPROConfig,
    Metric,
    ProgramSpec,
    StopRequested,
    TrialRecord,
    Usage,
    examples_from_records,
    metric_calls_per_example,
    metric_usage,
    resolve_metric,
    split_train_val,
)

logger = logging.getLogger(__name__)

TrialObserver = Callable[[TrialRecord, "run_actions.TrialOutcome"], None]


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def heartbeat_seconds() -> float:
    return _setting("GOVERNANCE_RUN_HEARTBEAT_SECONDS", 10)


def stale_seconds() -> float:
    return _setting("GOVERNANCE_RUN_STALE_SECONDS", 120)


def redispatch_seconds() -> float:
    return _setting("GOVERNANCE_RUN_REDISPATCH_SECONDS", 900)


def max_attempts() -> int:
    return int(_setting("GOVERNANCE_RUN_MAX_ATTEMPTS", 3))


# --- dispatch -----------------------------------------------------------------------------------------------


@receiver(run_requested)
def _on_run_requested(sender: Any, run_id: int, **kwargs: Any) -> None:
    dispatch_run(run_id)  # looked up at call time: tests replace dispatch_run


def dispatch_run(run_id: int) -> None:
    """Hand a queued run to Celery, or to the local pool when no broker is configured (on commit)."""
    jobs.enqueue("governance.tasks.run_optimization", run_id, key=run_id,
                 local=lambda: execute_run(run_id, worker_name=worker_name("local")))


def spread_run(run_id: int, workers: int = 2) -> int:
    """Let `workers - 1` more workers run trials of the run's study (the run's own task is the first).

    Each joins once the owner has stored the candidates in the study; trials are shared through optuna's
    storage, so they never duplicate. Returns how many helpers were enqueued.
    """
    if workers < 2:
        return 0
    for _ in range(workers - 1):
        jobs.enqueue("governance.tasks.run_trials", run_id, key=run_id,
                     local=lambda: join_run(run_id, worker_name=worker_name("local-helper")))
    return workers - 1


def _mipro(inputs: RunInputs, reporter: TrialReporter, *, joining: bool) -> MIPRO:
    """The run's optimizer, with the reporter's LM and metric. A joining or resuming worker gets its own sampler
    seed: with the run's seed it would sample the same configurations as the worker before it."""
    config = inputs.mipro
    if joining:
        config = replace(config, sampler_seed=secrets.randbelow(2**31))
    return MIPRO(reporter.metric, reporter.lm, config, callback=reporter)


# --- the run's inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInputs:
    """Everything a run executes with, rebuilt from its row (so any worker can execute or resume it)."""

    program: ProgramSpec
    trainset: list[Example]
    valset: list[Example]
    testset: list[Example]
    metric: Metric
    lm_config: LMConfig
    budget: Budget
    mipro: MIPROConfig


def _examples(dataset_id: int | None, program: ProgramSpec) -> list[Example]:
    if dataset_id is None:
        return []
    dataset = Dataset.objects.get(pk=dataset_id)
    return examples_from_records(dataset_actions.examples_for(dataset), program,
                                 source=f"dataset {dataset.name} (#{dataset.pk})")


def load_inputs(run: OptimizationRun) -> RunInputs:
    config = run.config
    spec = run.base_version.payload["program"] if run.base_version_id else run.program.spec
    program = ProgramSpec.from_dict(spec)
    ids = config["datasets"]
    trainset, valset = _examples(ids["train"], program), _examples(ids.get("val"), program)
    if not valset:  # held out of train with the run's seed, so a resumed run holds out the same examples
        trainset, valset = split_train_val(trainset, val_fraction=0.3, max_val=PRESETS[config["preset"]].val_size,
                                           seed=config["seed"])
    mipro = MIPROConfig(preset=config["preset"], seed=config["seed"], num_trials=config["num_trials"],
                        patience=getattr(settings, "GOVERNANCE_RUN_PATIENCE", None), storage=optuna_storage_url(),
                        study_name=run.study_name)
    return RunInputs(program, trainset, valset, _examples(ids.get("test"), program),
                     resolve_metric(config.get("metric") or run.program.metric), lm_config_from(config["task_lm"]),
                     Budget(**config["budget"]), mipro)


def _remaining(budget: Budget, run: OptimizationRun) -> Budget:
    """A joining worker's share: what the run has not spent yet (workers report spending per trial)."""
    def left(cap: float | None, used: float) -> Any:
        return None if cap is None else max(type(cap)(cap - used), 0)
    return Budget(max_calls=left(budget.max_calls, run.calls),
                  max_tokens=left(budget.max_tokens, run.prompt_tokens + run.completion_tokens),
                  max_usd=left(budget.max_usd, run.cost_usd))


# --- per-trial reporting ------------------------------------------------------------------------------------


class TrialReporter:
    """The search's callback: records each trial and the worker's spending (its LM's and, for an LM judge, its
    metric's), stops on a cancel request or when the run's budget is spent across workers (each worker's LM and
    judge enforce its share exactly, together)."""

    def __init__(self, run: OptimizationRun, lm: Any, metric: Metric, *, worker: str, owner: bool,
                 observer: TrialObserver | None = None) -> None:
        self.run_id = run.pk
        self.budget = Budget(**run.config["budget"])
        self.lm = lm
        self.metric = guarded_metric(metric, lm)
        self.worker = worker
        self.owner = owner
        self.observer = observer
        self.stopped: str | None = None
        self._reported = self._spent()

    def _spent(self) -> Usage:
        return self.lm.usage() + metric_usage(self.metric)

    def take_usage(self) -> Usage:
        """Spending since the last report, and move the mark."""
        now = self._spent()
        delta, self._reported = now - self._reported, now
        return delta

    def __call__(self, record: TrialRecord) -> None:
        outcome = run_actions.record_trial(self.run_id, record, worker=self.worker, usage=self.take_usage(),
                                           owner=self.owner)
        if self.observer is not None:
            self.observer(record, outcome)
        if record.error is not None:
            return  # the trial ended on BudgetExceeded/StopRequested, which the search re-raises itself
        self.stopped = outcome.stop or self._over_budget()
        if self.stopped:
            raise StopRequested(self.stopped)

    def _over_budget(self) -> str | None:
        run = OptimizationRun.objects.only("calls", "prompt_tokens", "completion_tokens", "cost_usd").get(pk=self.run_id)
        for cap, used, name in ((self.budget.max_calls, run.calls, "calls"),
                                (self.budget.max_tokens, run.prompt_tokens + run.completion_tokens, "tokens"),
                                (self.budget.max_usd, run.cost_usd, "usd")):
            if cap is not None and used >= cap:
                return f"budget exhausted: {name} limit {cap:g} reached by the run's workers (used {used:g})"
        return None


class Heartbeat(PollingThread):
    """A thread that tells the database the executor is alive, also during long phases without trials
    (bootstrapping, proposals, the final evaluation). `lost` turns True if another executor took over. A missed
    beat is survivable: the staleness window spans several."""

    def __init__(self, run_id: int, worker: str, interval: float) -> None:
        super().__init__(f"heartbeat-run-{run_id}", interval)
        self.run_id, self.worker = run_id, worker
        self.lost = False

    def poll(self) -> bool:
        self.lost = not run_actions.heartbeat(self.run_id, worker=self.worker)
        return not self.lost


# --- execution ----------------------------------------------------------------------------------------------


def execute_run(run_id: int, *, worker_name: str, on_trial: TrialObserver | None = None) -> str:
    """Execute (or resume) a run as its owner: search, evaluate, then propose a version in one transaction.

    Returns the run's final status, or why it was skipped (finished already, or owned by a live worker).
    Never raises for a run's own failure: that is recorded on the run (status failed, error).
    """
    claim = run_actions.claim_run(run_id, worker=worker_name, stale_after=stale_seconds())
    if claim.run is None:
        logger.info("run %s not executed: %s", run_id, claim.skipped)
        return claim.skipped
    run = claim.run
    logger.info("run %s: executing on %s (attempt %d)", run.pk, worker_name, run.attempts)
    try:
        with Heartbeat(run.pk, worker_name, heartbeat_seconds()):
            return _execute(run, worker_name, on_trial)
    except Exception as exc:  # every failure ends the run as failed, with its reason
        logger.exception("run %s failed", run.pk)
        _fail(run, worker_name, exc)
        return RunStatus.FAILED


def _execute(run: OptimizationRun, worker: str, on_trial: TrialObserver | None) -> str:
    inputs = load_inputs(run)
    ensure_optuna_storage(inputs.mipro.storage or "")
    run_actions.record_progress(run.pk, progress={"phase": "candidates"}, heartbeat=True)
    with CancelWatch(run.pk) as watch, guarded_lm(inputs.lm_config, _search_budget(inputs, run), watch) as lm:
        reporter = TrialReporter(run, lm, inputs.metric, worker=worker, owner=True, observer=on_trial)
        mipro = _mipro(inputs, reporter, joining=run.attempts > 1)
        try:
            result = mipro.compile(inputs.program, inputs.trainset, inputs.valset)
        except StopRequested as exc:  # a cancel before the first trial (bootstrapping, proposals)
            return _end_cancelled(run, worker, None, reporter.take_usage(), f"cancelled before the search: {exc}")
        run.refresh_from_db()
        if run.status != RunStatus.RUNNING or run.worker != worker:
            # Recovery judged this executor lost and handed the run on; the new executor writes the outcome.
            logger.warning("run %s: no longer executed by %s (%s, %s)", run.pk, worker, run.status, run.worker)
            return f"abandoned: run {run.pk} is {run.status} on {run.worker or 'no worker'}"
        if run.cancel_requested:
            return _end_cancelled(run, worker, result.candidates.to_dict(), reporter.take_usage(),
                                  f"cancelled at a trial boundary after {len(result.trials)} trials")
        run_actions.record_progress(run.pk, progress={"phase": "final evaluation"}, usage=reporter.take_usage())
        return _propose(run, inputs, result, worker, watch)


def _fail(run: OptimizationRun, worker: str, exc: BaseException) -> None:
    error = f"{type(exc).__name__}: {exc}"
    try:
        run_actions.finish_run(run, RunStatus.FAILED, stop_reason="error", error=error, worker=worker)
    except GovernanceError as again:  # finished or handed on meanwhile: the current state stands
        logger.warning("run %s: could not record the failure (%s): %s", run.pk, again, error)


def _end_cancelled(run: OptimizationRun, worker: str, candidates: dict[str, Any] | None, usage: Usage,
                   stop_reason: str) -> str:
    run_actions.end_cancelled(run, candidates=candidates, usage=usage, stop_reason=stop_reason)
    return RunStatus.CANCELLED


def _search_budget(inputs: RunInputs, run: OptimizationRun) -> Budget:
    """What the search may spend: the run's budget less what it spent before (a resumed run) and less the
    final evaluation's share, planned up front so the whole run stays within its caps."""
    reserve = run_actions.final_evaluation_reserve(inputs.budget, calls=run_actions.final_evaluation_calls(
        len(inputs.testset), len(inputs.program.predictors), metric_calls_per_example(inputs.metric)))
    return _remaining(reserve, run)


def _propose(run: OptimizationRun, inputs: RunInputs, result: Any, worker: str, watch: CancelWatch) -> str:
    """Evaluate candidate and production on the test rows inside what is left of the run's budget, then open
    the change request (all in one transaction). A cancel during the evaluation ends the run cancelled."""
    final = FinalEvaluation(run, watch)
    try:
        for _ in range(3):
            production = review_actions.production_version(run.program)
            proposal = build_proposal(run, inputs, result, production, final)
            try:
                run_actions.complete_run(run, worker=worker, proposal=proposal, usage=Usage.zero())
            except run_actions.ProductionMoved:
                continue
            run.refresh_from_db()
            return run.status
    except StopRequested as exc:
        return _end_cancelled(run, worker, result.candidates.to_dict(), Usage.zero(),
                              f"cancelled during the final evaluation: {exc}")
    raise RuntimeError("production kept moving during the final evaluation; giving up")


class FinalEvaluation:
    """The run's final evaluations: each version on the test dataset with its own LM, within what is left of
    the run's budget, stoppable by a cancel, with progress (phase, examples, calls, ETA) on the run."""

    def __init__(self, run: OptimizationRun, watch: CancelWatch) -> None:
        self.run, self.watch = run, watch
        self.started = time.monotonic()
        self.pending = 0  # examples still to evaluate in later evaluations of this phase

    def evaluate(self, payload: dict[str, Any], dataset: Dataset, which: str) -> Evaluation:
        evaluation = evaluation_actions.request_evaluation(self.run.program, payload, dataset, actor=None,
                                                           run=self.run, announce=False)
        if evaluation.status == EvaluationStatus.SUCCEEDED:
            return evaluation  # reused: the same content, data and model were evaluated before
        if evaluation.status == EvaluationStatus.RUNNING and evaluation.worker == self.worker:
            evaluation = self._take_over(evaluation, payload, dataset)
        claimed = evaluation_actions.claim_evaluation(evaluation.pk, worker=self.worker)
        if claimed is None:
            return self._await(evaluation)
        self.run.refresh_from_db()
        with guarded_lm(lm_config_from(claimed.lm_config), _remaining(Budget(**self.run.config["budget"]), self.run),
                        self.watch) as lm:
            spent = evaluator.Spending(lm)  # the LM's calls and its judge's
            try:
                return evaluator.run_claimed(claimed, lm, on_progress=self._progress(which, claimed.examples),
                                             spending=spent)
            finally:  # spending goes on the run at once: the next evaluation's budget is what is left after it
                run_actions.record_progress(self.run.pk, progress={}, usage=spent())

    def _progress(self, which: str, total: int) -> Callable[[int, int, Usage], None]:
        def report(done: int, _: int, spent: Usage) -> None:
            elapsed = time.monotonic() - self.started
            left = total - done + self.pending
            run_actions.record_progress(self.run.pk, progress={
                "phase": "final evaluation", "evaluation": {"which": which, "done": done, "total": total},
                "calls": self.run.calls + spent.calls, "eta_seconds": round(elapsed / max(done, 1) * left, 1)})
        return report

    @property
    def worker(self) -> str:
        return f"run-{self.run.pk}"

    def _take_over(self, evaluation: Evaluation, payload: dict[str, Any], dataset: Dataset) -> Evaluation:
        """An evaluation this run left running: its earlier attempt died with it (only one executor runs a run
        at a time), so nobody will finish it. End it as lost and ask for a fresh one."""
        evaluation_actions.fail_evaluation(evaluation, error=f"worker lost: run {self.run.pk}'s earlier attempt "
                                                             "stopped during it", usage=Usage.zero(), seconds=0.0)
        return evaluation_actions.request_evaluation(self.run.program, payload, dataset, actor=None, run=self.run,
                                                     announce=False)

    def _await(self, evaluation: Evaluation) -> Evaluation:
        """Another executor runs this evaluation (a change request's job): wait for it, stoppable by a cancel."""
        while True:
            evaluation.refresh_from_db()
            if evaluation.is_finished:
                return evaluation
            if self.watch():
                raise StopRequested(self.watch() or "cancel requested")
            time.sleep(0.5)


def build_proposal(run: OptimizationRun, inputs: RunInputs, result: Any, production: Any,
                   final: FinalEvaluation) -> run_actions.Proposal:
    """The system's evaluations of the compiled program and of production (or the program's spec when nothing is
    released yet) on the same test rows; the change request's gate and recommendation come from them."""
    payload = {"program": result.program.to_dict(), "lm": payload_lm(inputs.lm_config)}
    dataset = review_actions.evaluation_dataset(run.program)
    final.pending = dataset.row_count
    candidate = final.evaluate(payload, dataset, "candidate")
    final.pending = 0
    baseline = final.evaluate(review_actions.baseline_payload(run.program, production), dataset, "production")
    for evaluation in (candidate, baseline):
        if evaluation.status != EvaluationStatus.SUCCEEDED:
            raise RuntimeError(f"final evaluation {evaluation.pk} {evaluation.status}: {evaluation.error}")
    provenance = {"run": {"id": run.pk, "best_val_score": result.best_score, "best_params": result.best_params,
                          "stop_reason": result.stop_reason, "study_name": run.study_name,
                          "val_held_out": bool(run.config.get("val_held_out")), "trials": len(result.trials)}}
    return run_actions.Proposal(
        payload=payload, scores={"test": candidate.score}, evaluation=provenance,
        candidates=result.candidates.to_dict(), stop_reason=result.stop_reason,
        production_id=production.pk if production else None,
        title=f"Optimized {run.program.slug}: run {run.pk} ({run.config['preset']}, seed {run.config['seed']})",
        description=_describe(run, candidate, baseline, result))


def payload_lm(config: LMConfig) -> dict[str, Any]:
    """The LM part of a version payload: the model behaviour the approval is for (no endpoint, no secret)."""
    lm = {"model": config.model, "temperature": config.temperature, "max_tokens": config.max_tokens}
    if config.mode != "auto":
        lm["mode"] = config.mode
    return lm


def _describe(run: OptimizationRun, candidate: Evaluation, baseline: Evaluation, result: Any) -> str:
    return (f"Proposed by optimization run {run.pk} ({len(result.trials)} trials in its last attempt; "
            f"{result.stop_reason}). Test: {candidate.score:.3f} vs production {baseline.score:.3f} "
            f"({candidate.score - baseline.score:+.3f}) on {candidate.examples} examples, evaluated by the system "
            f"(evaluations {candidate.pk} and {baseline.pk}); the change request shows whether the gain is "
            "beyond chance.")


# --- joining a run (scale-out) ------------------------------------------------------------------------------


def join_run(run_id: int, *, worker_name: str, wait_seconds: float = 600) -> int:
    """Run trials of a running run's study as a helper; the owner evaluates and proposes. Returns the number
    of trials this helper recorded (0 when the run finished or never became ready)."""
    run = _await_study(run_id, wait_seconds)
    if run is None:
        return 0
    inputs = load_inputs(run)
    trials = 0

    def count(record: TrialRecord, outcome: Any) -> None:
        nonlocal trials
        trials += 1

    with guarded_lm(inputs.lm_config, _remaining(inputs.budget, run)) as lm:
        reporter = TrialReporter(run, lm, inputs.metric, worker=worker_name, owner=False, observer=count)
        try:
            _mipro(inputs, reporter, joining=True).compile(inputs.program, inputs.trainset, inputs.valset)
        except Exception:  # a helper's failure must not fail the run: the owner decides its outcome
            logger.exception("helper %s on run %s stopped", worker_name, run_id)
        finally:
            run_actions.record_progress(run_id, progress={}, usage=reporter.take_usage())
    return trials


def _await_study(run_id: int, wait_seconds: float) -> OptimizationRun | None:
    """The run, once its owner is searching (candidates stored in the study); None if it ends first."""
    import optuna  # start-up cost: web processes that never run a study do not load optuna

    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        run = OptimizationRun.objects.select_related("program", "base_version").get(pk=run_id)
        if run.status not in (RunStatus.QUEUED, RunStatus.RUNNING) or run.cancel_requested:
            return None
        if run.status == RunStatus.RUNNING:
            url = optuna_storage_url()
            ensure_optuna_storage(url)  # creating optuna's tables must go through the lock, here too
            try:
                storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
                try:
                    attrs = optuna.load_study(study_name=run.study_name, storage=storage).user_attrs
                finally:
                    dispose_storage(storage)
                if attrs.get("candidates") and attrs.get("priors_enqueued"):
                    return run
            except KeyError:
                pass  # the owner has not created the study yet
        time.sleep(1.0)
    return None


def change_request_of(run: OptimizationRun) -> ChangeRequest | None:
    """The change request a succeeded run opened."""
    return ChangeRequest.objects.filter(version__run=run).select_related("version").first()


__all__ = [
    "CancelWatch",
    "GuardedLM",
    "ModelFailing",
    "guarded_lm",
    "change_request_of",
    "dispatch_run",
    "execute_run",
    "join_run",
    "lm_config_from",
    "local_executor",
    "worker_name",
    "payload_lm",
    "spread_run",
]
