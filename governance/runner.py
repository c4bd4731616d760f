"""Executes optimization runs: in a Celery worker, in the web process's local pool, or in the foreground (CLI).

Why a local thread pool rather than Celery's eager mode when no broker is configured: an eager task runs
inside `.delay()`, i.e. in the web request that started the run, which would hold the request (and a
gunicorn worker) for the whole search, minutes to hours. The pool returns at once; the run's row, progress and
audit events are the same either way. What the pool cannot do is survive the process: a run whose process
died is picked up by `recover_stale_runs` (celery beat runs it every minute; embedded installs can call it).

Resume and scale-out rest on the optuna study, stored in the app's database (PostgreSQL) or, on SQLite, in a
file next to it (a separate file so the study's writes never lock the app database): a re-executed run
continues its study where it stopped, and `spread_run` lets more workers run trials of the same study.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Self

from django.conf import settings
from django.db import connection, connections, transaction

from governance.actions import runs as run_actions
from governance.actions.datasets import examples_for
from governance.actions.reviews import production_version
from governance.errors import GovernanceError
from governance.models import ChangeRequest, Dataset, OptimizationRun, Program, RunStatus, Schedule
from optimizer import (
    LM,
    MIPRO,
    Budget,
    BudgetExceeded,
    LMConfig,
    LMError,
    LMUnreachableError,
    MIPROConfig,
    StopRequested,
    TrialRecord,
    Usage,
)
from optimizer.data import Example, examples_from_records, split_train_val
from optimizer.evaluation import EvaluationResult, evaluate
from optimizer.metrics import Metric, resolve_metric
from optimizer.program import Program as OptProgram
from optimizer.search import PRESETS

logger = logging.getLogger(__name__)

MAX_FAILURES = 50          # per version, in a change request's evaluation
_STORAGE_LOCK_ID = 4242_0002  # advisory lock naming "create the optuna tables" (see governance.audit for 0001)
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


def worker_name(kind: str) -> str:
    """Unique per executing thread: the run row records which executor owns it."""
    return f"{kind}@{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


# --- dispatch -----------------------------------------------------------------------------------------------


def dispatch_run(run_id: int) -> None:
    """Hand a queued run to Celery, or to the local pool when no broker is configured (called on commit)."""
    if settings.CELERY_BROKER_URL:
        from governance.tasks import run_optimization

        run_optimization.delay(run_id)
    else:
        local_executor().submit(run_id, lambda: execute_run(run_id, worker_name=worker_name("local")))


def spread_run(run_id: int, workers: int = 2) -> int:
    """Let `workers - 1` more workers run trials of the run's study (the run's own task is the first).

    Each joins once the owner has stored the candidates in the study; trials are shared through optuna's
    storage, so they never duplicate. Returns how many helpers were enqueued.
    """
    if workers < 2:
        return 0
    for _ in range(workers - 1):
        if settings.CELERY_BROKER_URL:
            from governance.tasks import run_trials

            run_trials.delay(run_id)
        else:
            local_executor().submit(run_id, lambda: join_run(run_id, worker_name=worker_name("local-helper")))
    return workers - 1


class LocalExecutor:
    """The embedded default's job runner: a small thread pool in this process (see the module docstring)."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="governance-run")
        self._futures: dict[int, list[Future[Any]]] = {}
        self._lock = threading.Lock()

    def submit(self, run_id: int, job: Callable[[], Any]) -> Future[Any]:
        future = self._pool.submit(_in_own_connection, job)
        with self._lock:
            self._futures.setdefault(run_id, []).append(future)
        return future

    def wait(self, run_id: int, timeout: float | None = None) -> None:
        """Block until every job of `run_id` submitted so far has ended (tests, the CLI, shutdown)."""
        with self._lock:
            futures = list(self._futures.get(run_id, []))
        done, pending = wait_futures(futures, timeout=timeout)
        if pending:
            raise TimeoutError(f"run {run_id} still executing after {timeout}s")
        for future in done:
            future.result()


def _in_own_connection(job: Callable[[], Any]) -> Any:
    try:
        return job()
    except Exception:  # a pool thread has nobody to raise to; the run row holds the error already
        logger.exception("local run job failed")
        raise
    finally:
        connections.close_all()  # this thread's connections; Django would otherwise leak one per job


_executor: LocalExecutor | None = None
_executor_lock = threading.Lock()


def local_executor() -> LocalExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = LocalExecutor(int(_setting("GOVERNANCE_LOCAL_RUN_WORKERS", 2)))
        return _executor


# --- optuna storage -----------------------------------------------------------------------------------------


def optuna_storage_url() -> str:
    """The study's storage: GOVERNANCE_OPTUNA_STORAGE, else the app's PostgreSQL database, else a SQLite file
    under VAR_DIR (not the app's SQLite file: optuna's writes would contend with the app's for its lock)."""
    configured = getattr(settings, "GOVERNANCE_OPTUNA_STORAGE", "")
    if configured:
        return configured
    db = connections["default"].settings_dict  # during tests this names the test database
    if connection.vendor == "postgresql":
        from sqlalchemy.engine import URL

        url = URL.create("postgresql+psycopg", username=db.get("USER") or None, password=db.get("PASSWORD") or None,
                         host=db.get("HOST") or None, port=int(db["PORT"]) if db.get("PORT") else None,
                         database=db["NAME"])
        return url.render_as_string(hide_password=False)
    return f"sqlite:///{Path(settings.VAR_DIR) / 'optuna.sqlite3'}"


_storages_ready: set[str] = set()


def ensure_optuna_storage(url: str) -> None:
    """Create optuna's tables once, under an advisory lock on PostgreSQL: two workers creating them at the same
    moment would otherwise race on the DDL."""
    if url in _storages_ready:
        return
    import optuna

    if connection.vendor == "postgresql" and url.startswith("postgresql"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_STORAGE_LOCK_ID])
            _dispose(optuna.storages.RDBStorage(url))
    else:
        _dispose(optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}}))
    _storages_ready.add(url)


def _dispose(storage: Any) -> None:
    """Close a storage's connection pool now, rather than whenever the garbage collector gets to it."""
    backend = getattr(storage, "_backend", storage)  # optuna wraps RDBStorage in a caching layer
    engine = getattr(backend, "engine", None)
    if engine is not None:
        engine.dispose()


def _mipro(inputs: RunInputs, lm: LM, reporter: TrialReporter, *, joining: bool) -> MIPRO:
    """The run's optimizer. A joining or resuming worker gets its own sampler seed: with the run's seed it would
    sample the same configurations as the worker before it."""
    config = inputs.mipro
    if joining:
        config = replace(config, sampler_seed=secrets.randbelow(2**31))
    return MIPRO(inputs.metric, lm, config, callback=reporter)


# --- the run's inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInputs:
    """Everything a run executes with, rebuilt from its row (so any worker can execute or resume it)."""

    program: OptProgram
    trainset: list[Example]
    valset: list[Example]
    testset: list[Example]
    metric: Metric
    lm_config: LMConfig
    budget: Budget
    mipro: MIPROConfig


def lm_config_from(values: dict[str, Any]) -> LMConfig:
    """An LMConfig from stored settings: the deployment's cache file, the key from the environment."""
    known = {f.name for f in fields(LMConfig)} - {"api_key", "cache_path"}
    return LMConfig(**{k: v for k, v in values.items() if k in known},
                    cache_path=settings.GOVERNANCE_LM_CACHE_PATH,
                    api_key=os.environ.get("GOVERNANCE_LM_API_KEY") or None)


def _examples(dataset_id: int | None, program: OptProgram) -> list[Example]:
    if dataset_id is None:
        return []
    dataset = Dataset.objects.get(pk=dataset_id)
    return examples_from_records(examples_for(dataset), program, source=f"dataset {dataset.name} (#{dataset.pk})")


def load_inputs(run: OptimizationRun) -> RunInputs:
    config = run.config
    spec = run.base_version.payload["program"] if run.base_version_id else run.program.spec
    program = OptProgram.from_dict(spec)
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


class ModelFailing(LMUnreachableError):
    """The model rejected or failed every one of many calls in a row: the run cannot produce anything useful."""


class GuardedLM:
    """An LM that trips after `limit` consecutive failed calls and then refuses every call.

    The optimizer scores a failed call as a wrong answer, which is right for one bad example but would turn a
    broken endpoint (revoked key, wrong model name, HTTP 400 on everything) into a run that "succeeds" with
    zeros and proposes garbage. LMUnreachableError is the error the optimizer lets end a run, so that is what a
    tripped guard raises. Everything else is delegated to the wrapped LM.
    """

    def __init__(self, lm: LM, limit: int = 10) -> None:
        self._lm, self._limit = lm, limit
        self._failures, self._tripped = 0, None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lm, name)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._lm.close()

    def complete(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._lm.complete, *args, **kwargs)

    def chat(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._lm.chat, *args, **kwargs)

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._tripped is not None:
            raise self._tripped
        try:
            response = method(*args, **kwargs)
        except LMError as exc:
            if isinstance(exc, BudgetExceeded):
                raise
            self._count_failure(exc)
            raise
        with self._lock:
            self._failures = 0
        return response

    def _count_failure(self, exc: LMError) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self._limit and self._tripped is None:
                self._tripped = ModelFailing(f"model {self._lm.config.model} failed {self._failures} calls in a "
                                             f"row; last error: {exc}")
            tripped = self._tripped
        if tripped is not None:
            raise tripped from exc


def guarded_lm(config: LMConfig, budget: Budget | None = None) -> Any:
    """The LM runs and checks use; typed Any because it stands in for optimizer.LM by duck typing."""
    return GuardedLM(LM(config, budget))


# --- per-trial reporting ------------------------------------------------------------------------------------


class TrialReporter:
    """The search's callback: records each trial and the worker's spending, stops on a cancel request or when
    the run's budget is spent across workers (each worker's own LM enforces its share exactly)."""

    def __init__(self, run: OptimizationRun, lm: Any, *, worker: str, owner: bool,
                 observer: TrialObserver | None = None) -> None:
        self.run_id = run.pk
        self.budget = Budget(**run.config["budget"])
        self.lm = lm
        self.worker = worker
        self.owner = owner
        self.observer = observer
        self.stopped: str | None = None
        self._reported = lm.usage()

    def take_usage(self) -> Usage:
        """Spending since the last report, and move the mark."""
        now = self.lm.usage()
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


class Heartbeat:
    """A thread that tells the database the executor is alive, also during long phases without trials
    (bootstrapping, proposals, the final evaluation). `lost` turns True if another executor took over."""

    def __init__(self, run_id: int, worker: str, interval: float) -> None:
        self.run_id, self.worker, self.interval = run_id, worker, interval
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-run-{run_id}", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                if not run_actions.heartbeat(self.run_id, worker=self.worker):
                    self.lost = True
                    return
        except Exception:  # a missed beat is survivable: the staleness window spans several
            logger.exception("heartbeat of run %s failed", self.run_id)
        finally:
            connection.close()


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
    with guarded_lm(inputs.lm_config, inputs.budget) as lm:
        reporter = TrialReporter(run, lm, worker=worker, owner=True, observer=on_trial)
        mipro = _mipro(inputs, lm, reporter, joining=run.attempts > 1)
        result = mipro.compile(inputs.program, inputs.trainset, inputs.valset)
        run.refresh_from_db()
        if run.status != RunStatus.RUNNING or run.worker != worker:
            # Recovery judged this executor lost and handed the run on; the new executor writes the outcome.
            logger.warning("run %s: no longer executed by %s (%s, %s)", run.pk, worker, run.status, run.worker)
            return f"abandoned: run {run.pk} is {run.status} on {run.worker or 'no worker'}"
        if run.cancel_requested:
            run_actions.end_cancelled(run, candidates=result.candidates.to_dict(), usage=reporter.take_usage(),
                                      stop_reason=f"cancelled at a trial boundary after {len(result.trials)} trials")
            return RunStatus.CANCELLED
        return _propose(run, inputs, result, worker, reporter)


def _propose(run: OptimizationRun, inputs: RunInputs, result: Any, worker: str, reporter: TrialReporter) -> str:
    """Evaluate candidate and production (outside the search budget: see docs/operations.md), then write."""
    run_actions.record_progress(run.pk, progress={"phase": "evaluation"})
    search_usage = reporter.take_usage()
    with guarded_lm(inputs.lm_config) as eval_lm:
        for _ in range(3):
            production = production_version(run.program)
            proposal = build_proposal(run, inputs, result, production, eval_lm)
            try:
                usage = _sum(search_usage, eval_lm.usage())  # a rolled-back attempt recorded nothing
                run_actions.complete_run(run, worker=worker, proposal=proposal, usage=usage)
            except run_actions.ProductionMoved:
                continue
            run.refresh_from_db()
            return run.status
    raise RuntimeError("production kept moving during the final evaluation; giving up")


def _sum(a: Usage, b: Usage) -> Usage:
    return Usage(**{f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(Usage)})


def _fail(run: OptimizationRun, worker: str, exc: BaseException) -> None:
    error = f"{type(exc).__name__}: {exc}"
    try:
        run_actions.finish_run(run, RunStatus.FAILED, stop_reason="error", error=error, worker=worker)
    except GovernanceError as again:  # finished or handed on meanwhile: the current state stands
        logger.warning("run %s: could not record the failure (%s): %s", run.pk, again, error)


# --- the proposal -------------------------------------------------------------------------------------------


def _scores(program: OptProgram, inputs: RunInputs, lm: Any) -> dict[str, EvaluationResult]:
    splits = {"val": inputs.valset, "test": inputs.testset}
    return {split: evaluate(program, examples, inputs.metric, lm) for split, examples in splits.items() if examples}


def _failures(results: dict[str, EvaluationResult]) -> list[dict[str, Any]]:
    """Per-example failures, test first (the gate's split), capped for the review page."""
    rows = [{"split": split, **r.to_dict()} for split in ("test", "val") if split in results
            for r in results[split].failures]
    return rows[:MAX_FAILURES]


def build_proposal(run: OptimizationRun, inputs: RunInputs, result: Any, production: Any,
                   lm: Any) -> run_actions.Proposal:
    """Score the compiled program and production (or the program's spec when nothing is released yet) on the
    same model, val and test, and describe the comparison for reviewers."""
    baseline = OptProgram.from_dict(production.payload["program"] if production else run.program.spec)
    candidate, current = _scores(result.program, inputs, lm), _scores(baseline, inputs, lm)
    cand = {split: r.score for split, r in candidate.items()}
    prod = {split: r.score for split, r in current.items()}
    gate = "test" if "test" in cand else "val"
    evaluation = {
        "candidate": cand, "production": {**prod, "version": production.number if production else None,
                                          "source": f"version {production.number}" if production else "program spec"},
        "deltas": {split: round(cand[split] - prod[split], 6) for split in cand},
        "failing_examples": _failures(candidate), "production_failing_examples": _failures(current),
        "examples": {split: len(r.results) for split, r in candidate.items()},
        "lm": {"model": inputs.lm_config.model}, "val_held_out": bool(run.config.get("val_held_out")),
        "run": {"id": run.pk, "best_val_score": result.best_score, "best_params": result.best_params,
                "stop_reason": result.stop_reason, "study_name": run.study_name},
    }
    recommended = cand[gate] > prod[gate]
    return run_actions.Proposal(
        payload={"program": result.program.to_dict(), "lm": payload_lm(inputs.lm_config)}, scores=cand,
        evaluation=evaluation, recommended=recommended, candidates=result.candidates.to_dict(),
        stop_reason=result.stop_reason, production_id=production.pk if production else None,
        title=f"Optimized {run.program.slug}: run {run.pk} ({run.config['preset']}, seed {run.config['seed']})",
        description=_describe(run, cand, prod, gate, recommended, result))


def payload_lm(config: LMConfig) -> dict[str, Any]:
    """The LM part of a version payload: the model behaviour the approval is for (no endpoint, no secret)."""
    lm = {"model": config.model, "temperature": config.temperature, "max_tokens": config.max_tokens}
    if config.mode != "auto":
        lm["mode"] = config.mode
    return lm


def _describe(run: OptimizationRun, cand: dict[str, float], prod: dict[str, float], gate: str, recommended: bool,
              result: Any) -> str:
    scores = "; ".join(f"{split} {cand[split]:.3f} vs production {prod[split]:.3f} "
                       f"({cand[split] - prod[split]:+.3f})" for split in cand)
    verdict = "Recommended" if recommended else f"Not recommended: it does not beat production on {gate}"
    return (f"Proposed by optimization run {run.pk} ({len(result.trials)} trials in its last attempt; "
            f"{result.stop_reason}). {scores}. {verdict}.")


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
        reporter = TrialReporter(run, lm, worker=worker_name, owner=False, observer=count)
        try:
            _mipro(inputs, lm, reporter, joining=True).compile(inputs.program, inputs.trainset, inputs.valset)
        except Exception:  # a helper's failure must not fail the run: the owner decides its outcome
            logger.exception("helper %s on run %s stopped", worker_name, run_id)
        finally:
            run_actions.record_progress(run_id, progress={}, usage=reporter.take_usage())
    return trials


def _await_study(run_id: int, wait_seconds: float) -> OptimizationRun | None:
    """The run, once its owner is searching (candidates stored in the study); None if it ends first."""
    import optuna

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
                    _dispose(storage)
                if attrs.get("candidates") and attrs.get("priors_enqueued"):
                    return run
            except KeyError:
                pass  # the owner has not created the study yet
        time.sleep(1.0)
    return None


# --- scheduled jobs -----------------------------------------------------------------------------------------


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
    return outcomes


REOPTIMIZE_AFTER = {Schedule.NIGHTLY: 20 * 3600, Schedule.WEEKLY: 6.5 * 86400}  # seconds; slack for beat jitter


def reoptimize_due_programs() -> dict[str, int | str]:
    """Start a run for each program on a schedule whose last run is old enough and whose data changed since
    (the same data, seed and cache would only propose the same prompt again). Started as the owner."""
    from django.utils import timezone

    from governance.actions.datasets import active_datasets

    started: dict[str, int | str] = {}
    for program in Program.objects.exclude(reoptimize_schedule=Schedule.NONE).select_related("owner"):
        last = program.runs.order_by("-created_at").first()
        if last is not None and (last.status in run_actions.ACTIVE_RUN_STATUSES or (
                timezone.now() - last.created_at).total_seconds() < REOPTIMIZE_AFTER[program.reoptimize_schedule]):
            continue
        hashes = {split: d.content_hash for split, d in active_datasets(program).items()}
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


def change_request_of(run: OptimizationRun) -> ChangeRequest | None:
    """The change request a succeeded run opened."""
    return ChangeRequest.objects.filter(version__run=run).select_related("version").first()


__all__ = [
    "change_request_of",
    "dispatch_run",
    "execute_run",
    "join_run",
    "lm_config_from",
    "local_executor",
    "optuna_storage_url",
    "payload_lm",
    "recover_stale_runs",
    "reoptimize_due_programs",
    "spread_run",
]
